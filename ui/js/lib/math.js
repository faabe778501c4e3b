// Finding LaTeX math in markdown: `$…$` and `\(…\)` inline, `$$…$$` and `\[…\]` displayed.
//
// The finders are marked extensions, so marked's own tokenizers decide what is code: a `$` inside
// a code span or a fenced or indented code block never reaches them. Math is cut out whole before
// marked sees it, so its underscores, asterisks and backslashes are not taken for emphasis or
// escapes. No DOM and no KaTeX here: the caller says how a formula becomes HTML.

// Inline `$…$` follows pandoc's rule, so prices stay prices ("$5 and $10"): the opening `$` is
// followed by a non-space, the closing one preceded by a non-space and not followed by a digit.
// No formula spans a blank line (a paragraph break ends it).
const NO_BLANK_LINE = String.raw`(?:(?!\n[ \t]*\n)[\s\S])`;
const INLINE = [
  { re: new RegExp(String.raw`^\$\$(${NO_BLANK_LINE}+?)\$\$`), display: true },
  { re: new RegExp(String.raw`^\\\[(${NO_BLANK_LINE}+?)\\\]`), display: true },
  { re: new RegExp(String.raw`^\\\((${NO_BLANK_LINE}+?)\\\)`), display: false },
  { re: /^\$(?=\S)((?:\\[\s\S]|[^\\$\n]|\n(?![ \t]*\n))+?)(?<=\S)\$(?!\d)/, display: false },
];
// Block math starts a line (up to three spaces in, like other markdown blocks) and its closing
// delimiter ends one.
const BLOCK = [
  { re: new RegExp(String.raw`^ {0,3}\$\$(${NO_BLANK_LINE}+?)\$\$[ \t]*(?:\n+|$)`) },
  { re: new RegExp(String.raw`^ {0,3}\\\[(${NO_BLANK_LINE}+?)\\\][ \t]*(?:\n+|$)`) },
];
const BLOCK_START = /(^|\n) {0,3}(?:\$\$|\\\[)/;

/** The first inline formula at the very start of `src`: {raw, tex, display}, or null. */
export function matchInlineMath(src) {
  for (const { re, display } of INLINE) {
    const m = re.exec(src);
    if (m && m[1].trim()) return { raw: m[0], tex: m[1].trim(), display };
  }
  return null;
}

/** A displayed formula filling the lines at the start of `src`: {raw, tex}, or null. */
export function matchBlockMath(src) {
  for (const { re } of BLOCK) {
    const m = re.exec(src);
    if (m && m[1].trim()) return { raw: m[0], tex: m[1].trim(), display: true };
  }
  return null;
}

/**
 * marked extensions that turn formulas into `render(tex, display)`'s HTML.
 * Use: `new Marked({ extensions: mathExtensions(render) })` or `marked.use(...)`.
 */
export function mathExtensions(render) {
  return [
    {
      name: "blockMath",
      level: "block",
      start(src) {
        const m = BLOCK_START.exec(src);
        return m ? m.index + m[1].length : undefined;
      },
      tokenizer(src) {
        const m = matchBlockMath(src);
        return m ? { type: "blockMath", raw: m.raw, text: m.tex, display: true } : undefined;
      },
      renderer(token) {
        return `<div class="math-block">${render(token.text, true)}</div>\n`;
      },
    },
    {
      name: "inlineMath",
      level: "inline",
      start(src) {
        const i = src.search(/\$|\\[([]/);
        return i >= 0 ? i : undefined;
      },
      tokenizer(src) {
        const m = matchInlineMath(src);
        return m ? { type: "inlineMath", raw: m.raw, text: m.tex, display: m.display } : undefined;
      },
      renderer(token) {
        return render(token.text, token.display);
      },
    },
  ];
}
