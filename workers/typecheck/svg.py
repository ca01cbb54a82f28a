"""SVG: well-formed XML under a size limit, with nothing that runs, loads or declares anything
(scripts, event handlers, foreign content, external references, entities)."""

from __future__ import annotations

import re
from xml.etree.ElementTree import Element, TreeBuilder

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser

from core.domain import Reason
from workers.typecheck.refusals import Refused
from workers.typecheck.source import Source, read_at

SVG = "image/svg+xml"
SVG_NS = "http://www.w3.org/2000/svg"
XHTML_NS = "http://www.w3.org/1999/xhtml"

_URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "base"})
_LOCAL_REF = re.compile(r"#.*|data:image/(?:png|jpeg|gif)[;,].*", re.IGNORECASE | re.DOTALL)
_SCRIPT_SCHEME = re.compile(r"(?:java|vb|live)script:", re.IGNORECASE)
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20]+")
# No closing parenthesis needed: CSS ends an unterminated url( at end of input.
_CSS_URL = re.compile(r"url\(([^)]*)", re.IGNORECASE)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_CSS_FORBIDDEN = re.compile(
    r"@import|expression\s*\(|-moz-binding|behavior\s*:|image-set\s*\(", re.IGNORECASE
)


class _TreeBuilder(TreeBuilder):
    """Records processing instructions, which ElementTree otherwise drops."""

    def __init__(self) -> None:
        super().__init__()
        self.pi_targets: list[str] = []

    def pi(self, target: str, text: str | None = None) -> Element:
        self.pi_targets.append(target)
        return super().pi(target, text)


def check_svg(src: Source, size: int, max_bytes: int) -> None:
    data = b"" if size > max_bytes else read_at(src, 0, max_bytes + 1)
    if size > max_bytes or len(data) > max_bytes:
        raise Refused(
            Reason.TOO_LARGE,
            f"SVG is {max(size, len(data))} bytes, over the limit of {max_bytes}",
            SVG,
        )
    builder = _TreeBuilder()
    # A plain DOCTYPE (Illustrator and Inkscape write the SVG 1.1 one) is harmless and common;
    # what makes a DTD dangerous is entities and external references, and those are refused.
    parser = DefusedXMLParser(
        target=builder, forbid_dtd=False, forbid_entities=True, forbid_external=True
    )
    try:
        parser.feed(data)
        root = parser.close()
    except DTDForbidden:  # not raised with forbid_dtd=False; kept should that flag change
        raise Refused(
            Reason.SVG_UNSAFE, "SVG contains a DOCTYPE declaration; DTDs are not allowed", SVG
        ) from None
    except EntitiesForbidden:
        raise Refused(Reason.SVG_UNSAFE, "SVG declares entities", SVG) from None
    except ExternalReferenceForbidden:
        raise Refused(Reason.SVG_UNSAFE, "SVG references external entities", SVG) from None
    except (SyntaxError, ValueError) as exc:
        raise Refused(Reason.CORRUPT, f"SVG is not well-formed XML: {exc}", SVG) from None
    if builder.pi_targets:
        raise Refused(
            Reason.SVG_UNSAFE,
            f"SVG contains a processing instruction <?{builder.pi_targets[0]} ...?>",
            SVG,
        )
    try:
        _check_tree(root)
    except Refused as refusal:
        raise Refused(refusal.code, refusal.message, SVG) from None


def _split(name: str) -> tuple[str, str]:
    if name.startswith("{"):
        namespace, _, local = name[1:].partition("}")
        return namespace, local
    return "", name


def _check_tree(root: Element) -> None:
    namespace, local = _split(root.tag)
    if local != "svg" or namespace not in (SVG_NS, ""):
        # Well-formed XML, but another vocabulary (XHTML, say) under an SVG name.
        raise Refused(Reason.TYPE_MISMATCH, f"the root element is <{root.tag}>, not <svg>")
    for element in root.iter():
        namespace, tag = _split(element.tag)
        lowered = tag.lower()
        if lowered in ("script", "handler"):
            raise Refused(Reason.SVG_UNSAFE, f"SVG contains a <{tag}> element")
        if lowered == "foreignobject":
            raise Refused(Reason.SVG_UNSAFE, "SVG contains a <foreignObject> element")
        if namespace == XHTML_NS:
            raise Refused(Reason.SVG_UNSAFE, f"SVG contains an HTML element <{tag}>")
        if lowered == "style":
            _check_css("".join(element.itertext()), "a <style> element")
        if lowered in ("set", "animate"):
            target = element.get("attributeName", "").rpartition(":")[2].lower()
            if target in _URL_ATTRIBUTES or target.startswith("on"):
                raise Refused(Reason.SVG_UNSAFE, f"SVG animates the {target} attribute in <{tag}>")
        for name, value in element.attrib.items():
            _check_attribute(tag, _split(name)[1], value)


def _check_attribute(tag: str, name: str, value: str) -> None:
    lowered = name.lower()
    where = f"the {name} attribute of <{tag}>"
    if lowered.startswith("on"):
        raise Refused(Reason.SVG_UNSAFE, f"SVG has an event handler: {where}")
    if _SCRIPT_SCHEME.search(_CONTROL_OR_SPACE.sub("", value)):
        raise Refused(Reason.SVG_UNSAFE, f"SVG has a script URL in {where}")
    if lowered in _URL_ATTRIBUTES and not _LOCAL_REF.fullmatch(value.strip()):
        raise Refused(
            Reason.SVG_UNSAFE,
            f"SVG references {value.strip()!r} in {where}; only #fragments are allowed",
        )
    if lowered == "style":
        _check_css(value, f"the style attribute of <{tag}>")
    else:  # presentation attributes such as fill="url(#gradient)"
        _check_css_urls(value, where)


def _check_css(css: str, where: str) -> None:
    css = _CSS_COMMENT.sub("", css)
    # Escapes can spell anything ("\75 rl(" is url(); "<" could close a <style>
    # when the SVG is inlined into HTML: neither is needed for drawing.
    if "\\" in css or "<" in css:
        raise Refused(Reason.SVG_UNSAFE, f"SVG has CSS escapes or markup in {where}")
    found = _CSS_FORBIDDEN.search(css)
    if found:
        raise Refused(Reason.SVG_UNSAFE, f"SVG has {found.group()!r} in {where}")
    _check_css_urls(css, where)


def _check_css_urls(text: str, where: str) -> None:
    for match in _CSS_URL.finditer(text):
        target = match.group(1).strip().strip("\"'").strip()
        if not _LOCAL_REF.fullmatch(target):
            raise Refused(
                Reason.SVG_UNSAFE,
                f"SVG references url({target}) in {where}; only #fragments are allowed",
            )
