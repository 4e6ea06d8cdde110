// A small Python highlighter for the trace: comments, strings, numbers, keywords and the sandbox's builtins
// become <span class="tok-…">; everything else stays plain text. It builds nodes, never markup, because the code
// it shows was written by a model.

const KEYWORDS = new Set(("False None True and as assert async await break case class continue def del elif else " +
  "except finally for from global if import in is lambda match nonlocal not or pass raise return try while with " +
  "yield").split(" "));
const BUILTINS = new Set(("abs all any bool dict enumerate float int isinstance len list max min print range " +
  "repr round sorted str sum tuple zip devices final_answer sleep").split(" "));

// One alternative per token kind; strings come before words so that a prefix like f"…" stays with its string.
// Unterminated strings run to the end of the line (or of the code, for triple quotes), as the editor would show.
const TOKEN = new RegExp([
  String.raw`(?<comment>#.*)`,
  String.raw`(?<string>[rbfu]{0,2}(?:"""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)` +
    String.raw`|"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?))`,
  String.raw`(?<number>\b(?:0[xob][\da-f_]+|\d[\d_]*(?:\.[\d_]*)?(?:e[+-]?\d+)?j?))`,
  String.raw`(?<word>[a-z_]\w*)`,
].join("|"), "gi");

function tokenClass(groups) {
  if (groups.word === undefined) return `tok-${Object.keys(groups).find((kind) => groups[kind] !== undefined)}`;
  if (KEYWORDS.has(groups.word)) return "tok-keyword";
  if (BUILTINS.has(groups.word)) return "tok-builtin";
  return null;
}

/** The source as a fragment of text nodes and token spans; its textContent is exactly `source`. */
export function highlightPython(source) {
  const fragment = document.createDocumentFragment();
  let shown = 0;
  for (const match of source.matchAll(TOKEN)) {
    const kind = tokenClass(match.groups);
    if (kind === null) continue;
    const token = document.createElement("span");
    token.className = kind;
    token.textContent = match[0];
    fragment.append(source.slice(shown, match.index), token);
    shown = match.index + match[0].length;
  }
  fragment.append(source.slice(shown));
  return fragment;
}
