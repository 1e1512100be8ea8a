// A plain textarea with line numbers, and a problem shown beside its line: the line
// marked in the gutter (a "!" and bold, not colour alone), underlined at the column, and
// the message in the column to the right at the same height.
import { h } from "./dom.js";

export class Editor {
  constructor({ textarea, gutter, backdrop, note }) {
    Object.assign(this, { textarea, gutter, backdrop, note });
    this.pointer = h("span", { class: "pointer", "aria-hidden": "true", hidden: true }, "◀");
    note.after(this.pointer);
    this.problem = null;
    this.lines = 0;
    textarea.addEventListener("input", () => this.render());
    textarea.addEventListener("scroll", () => this.follow());
    new ResizeObserver(() => this.follow()).observe(textarea);
  }

  get text() {
    return this.textarea.value;
  }

  set text(value) {
    this.textarea.value = value;
    this.clear();
  }

  clear() {
    this.problem = null;
    this.note.hidden = true;
    this.pointer.hidden = true;
    this.note.textContent = "";
    this.render(true);
  }

  // {line, column, message}: shown until the next save or reload.
  show(problem) {
    this.problem = problem;
    const where = problem.column ? `Line ${problem.line}, column ${problem.column}` : `Line ${problem.line}`;
    this.note.replaceChildren(h("span", { class: "where" }, `⚠ ${where}`), h("span", {}, problem.message));
    this.note.dataset.line = String(problem.line);
    this.note.hidden = false;
    this.render(true);
    const lh = this.lineHeight();
    this.textarea.scrollTop = Math.max(0, (problem.line - 6) * lh);
    this.follow();
  }

  // Put the caret at the problem (selecting its note goes there).
  focusProblem() {
    if (!this.problem) return;
    const { line, column } = this.problem;
    const lines = this.text.split("\n");
    let offset = 0;
    for (let i = 0; i < line - 1; i++) offset += lines[i].length + 1;
    this.reveal(offset + Math.max(0, (column || 1) - 1));
  }

  // The caret at `offset`, its line a few lines from the top.
  reveal(offset) {
    const line = this.text.slice(0, offset).split("\n").length;
    this.textarea.focus();
    this.textarea.setSelectionRange(offset, offset);
    this.textarea.scrollTop = Math.max(0, (line - 4) * this.lineHeight());
    this.follow();
  }

  lineHeight() {
    return parseFloat(getComputedStyle(this.textarea).lineHeight) || 20;
  }

  render(force = false) {
    const text = this.text;
    const count = text.split("\n").length;
    const bad = this.problem?.line;
    if (force || count !== this.lines) {
      this.lines = count;
      const before = Array.from({ length: Math.min(count, (bad || count + 1) - 1) }, (_, i) => i + 1).join("\n");
      const parts = [before ? `${before}\n` : ""];
      if (bad && bad <= count) {
        parts.push(h("span", { class: "bad", title: "the problem is on this line" }, `!${bad}`));
        const after = Array.from({ length: count - bad }, (_, i) => bad + i + 1).join("\n");
        parts.push(after ? `\n${after}` : "");
      }
      this.gutter.replaceChildren(...parts);
    }
    this.backdrop.replaceChildren();
    if (bad && bad <= count) {
      const lines = text.split("\n");
      const line = lines[bad - 1];
      const col = Math.min(Math.max((this.problem.column || 1) - 1, 0), line.length);
      const mark = h("mark", { class: "bad-line" }, line.slice(0, col));
      if (this.problem.column) mark.append(h("span", { class: "at" }, line.slice(col, col + 1) || " "), line.slice(col + 1));
      else mark.append(line.slice(col));
      this.backdrop.append(lines.slice(0, bad - 1).map((l) => `${l}\n`).join(""), mark);
    }
    this.follow();
  }

  // Keep the gutter, the backdrop and the note where the text is.
  follow() {
    const { scrollTop, scrollLeft } = this.textarea;
    this.gutter.scrollTop = scrollTop;
    this.backdrop.scrollTop = scrollTop;
    this.backdrop.scrollLeft = scrollLeft;
    this.gutter.style.height = `${this.textarea.clientHeight}px`;
    this.backdrop.style.height = `${this.textarea.clientHeight}px`;
    if (!this.problem || this.note.hidden) return;
    const lh = this.lineHeight();
    const pad = parseFloat(getComputedStyle(this.textarea).paddingTop) || 0;
    const line = pad + (this.problem.line - 1) * lh - scrollTop; // the line's top
    const height = this.textarea.clientHeight;
    const tall = this.note.offsetHeight;
    // the note starts level with the line, or ends level with it when there is no room
    let top = line + tall > height ? line + lh - tall : line;
    top = Math.min(Math.max(top, 0), Math.max(height - tall, 0));
    this.note.style.top = `${top}px`;
    const seen = line >= 0 && line <= height - lh;
    this.pointer.hidden = !seen;
    this.pointer.style.top = `${line}px`;
    this.note.classList.toggle("off-screen", !seen);
  }
}
