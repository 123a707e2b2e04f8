// Markdown of an answer to DOM nodes, safe whatever the model wrote.
//
// Model output is untrusted. marked (vendor/marked.umd.js) turns it into HTML, with two
// changes: HTML in the text is shown as text, never parsed, and an image becomes its alt
// text (nothing is loaded). DOMPurify (vendor/purify.min.js) then keeps only the tags and
// attributes below; a link stays a link only to http, https or mailto, and opens in a new
// tab with rel="noopener noreferrer". The page's Content-Security-Policy backs this up.

const { marked, DOMPurify } = window;

const ALLOWED_TAGS = [
  "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
  "li", "ol", "p", "pre", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
];
const ALLOWED_ATTR = ["href", "title", "class", "align", "start"];
const LINK_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
const CODE_CLASS = /^language-[\w+#.-]{1,40}$/; // marked's class for a fenced code's language

const escapes = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => escapes[c]);

const parser = new marked.Marked({ gfm: true, breaks: false, async: false });
parser.use({
  renderer: {
    html({ text, block }) {
      return block ? `<p>${escapeHtml(text.trim())}</p>\n` : escapeHtml(text);
    },
    image({ text }) {
      return escapeHtml(text);
    },
    checkbox({ checked }) {
      return checked ? "[x] " : "[ ] ";
    },
  },
});

export function isAllowedUrl(href) {
  try {
    return LINK_PROTOCOLS.has(new URL(href, document.baseURI).protocol);
  } catch {
    return false;
  }
}

const purify = DOMPurify(window); // an instance of its own, so the hooks are the page's alone
purify.addHook("uponSanitizeAttribute", (node, data) => {
  if (data.attrName === "class" && !(node.nodeName === "CODE" && CODE_CLASS.test(data.attrValue))) {
    data.keepAttr = false;
  }
});
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName !== "A") return;
  const href = node.getAttribute("href");
  if (href === null || !isAllowedUrl(href)) {
    node.removeAttribute("href"); // left as text
    return;
  }
  node.setAttribute("target", "_blank");
  node.setAttribute("rel", "noopener noreferrer");
});
const PURIFY_CONFIG = {
  ALLOWED_TAGS,
  ALLOWED_ATTR,
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

// A fragment of sanitised nodes for the Markdown `text`.
export function renderMarkdown(text) {
  return purify.sanitize(parser.parse(text), PURIFY_CONFIG);
}
