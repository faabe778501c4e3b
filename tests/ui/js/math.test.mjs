import assert from "node:assert/strict";
import { test } from "node:test";
import { matchBlockMath, matchInlineMath, mathExtensions } from "../../../ui/js/lib/math.js";
import { Marked } from "../../../ui/vendor/marked.esm.js";

// The real marked, with formulas rendered as [I:tex] / [D:tex] so the output shows what was found.
const marked = new Marked({
  gfm: true,
  extensions: mathExtensions((tex, display) => `[${display ? "D" : "I"}:${tex}]`),
});
const md = (s) => marked.parse(s).trim();

test("every delimiter: $ and \\( inline, $$ and \\[ displayed", () => {
  assert.equal(md("Einstein: $E=mc^2$."), "<p>Einstein: [I:E=mc^2].</p>");
  assert.equal(md("\\( y_1 \\) and \\[ x^2 \\]"), "<p>[I:y_1] and [D:x^2]</p>");
  assert.equal(md("inline $$\\sum_i x_i$$ display"), "<p>inline [D:\\sum_i x_i] display</p>");
});

test("a displayed block on its own lines interrupts the paragraph around it", () => {
  assert.equal(
    md("Before\n$$\n\\frac{a}{b}\n$$\nafter"),
    '<p>Before</p>\n<div class="math-block">[D:\\frac{a}{b}]</div>\n<p>after</p>',
  );
  assert.equal(md("\\[\n\\int_0^1 f\n\\]"), '<div class="math-block">[D:\\int_0^1 f]</div>');
  assert.match(md("- $$\n  q\n  $$"), /<li><div class="math-block">\[D:q\]<\/div>/);
});

test("underscores, asterisks and backslashes inside math are not markdown", () => {
  assert.equal(md("$a_1 + b_2$ and $a*b*c$"), "<p>[I:a_1 + b_2] and [I:a*b*c]</p>");
  assert.equal(md("$\\{x\\} \\\\ y$"), "<p>[I:\\{x\\} \\\\ y]</p>");
  assert.equal(md("*em $x$ em*"), "<p><em>em [I:x] em</em></p>");
});

test("code spans and code blocks are left alone", () => {
  assert.equal(md("`$x$` and `\\(y\\)`"), "<p><code>$x$</code> and <code>\\(y\\)</code></p>");
  assert.equal(md("```\n$$z$$\n```"), "<pre><code>$$z$$\n</code></pre>");
  assert.equal(md("    $indented$"), "<pre><code>$indented$\n</code></pre>");
});

test("prices, escaped dollars and blank lines are not math", () => {
  assert.equal(md("costs $5 and $10 today"), "<p>costs $5 and $10 today</p>");
  assert.equal(md("from $ 5 to $ 6"), "<p>from $ 5 to $ 6</p>");
  assert.equal(md("\\$5 but $x$"), "<p>$5 but [I:x]</p>");
  assert.equal(md("a $b\n\nc$ d"), "<p>a $b</p>\n<p>c$ d</p>");
  assert.equal(md("$x$5"), "<p>$x$5</p>");
});

test("the matchers report the raw text they consume", () => {
  assert.deepEqual(matchInlineMath("$x^2$ rest"), { raw: "$x^2$", tex: "x^2", display: false });
  assert.equal(matchInlineMath("$ x$"), null);
  assert.equal(matchInlineMath("$$  $$"), null);
  assert.deepEqual(matchBlockMath("$$\nx\n$$\n\nnext"), { raw: "$$\nx\n$$\n\n", tex: "x", display: true });
  assert.equal(matchBlockMath("$$x$$ trailing text"), null);
});
