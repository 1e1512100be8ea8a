// Where a field the API names (`constraints.rules[0].exclude`) sits in JSON text, so a
// problem can be shown beside its line. The API formats paths as object keys joined by
// "." and list indexes as "[i]"; so does this scanner for the text the user wrote.

// path -> {key, start, end}: the offsets of its key (members only) and its value.
export function paths(text) {
  const out = new Map();
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\r\n".includes(text[i])) i++;
  };
  const string = () => {
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i));
  };
  const value = (path, key) => {
    ws();
    const start = i;
    const c = text[i];
    if (c === "{") {
      i++;
      ws();
      while (i < text.length && text[i] !== "}") {
        ws();
        const keyAt = i;
        const name = string();
        ws();
        i++; // ":"
        value(path ? `${path}.${name}` : name, keyAt);
        ws();
        if (text[i] === ",") i++;
        ws();
      }
      i++;
    } else if (c === "[") {
      i++;
      ws();
      for (let n = 0; i < text.length && text[i] !== "]"; n++) {
        value(`${path}[${n}]`, undefined);
        ws();
        if (text[i] === ",") i++;
        ws();
      }
      i++;
    } else if (c === '"') {
      string();
    } else {
      while (i < text.length && !",}] \t\r\n".includes(text[i])) i++;
    }
    out.set(path, { key, start, end: i });
  };
  value("", undefined);
  return out;
}

// The path and its parents: "a.b[0].c", "a.b[0]", "a.b", "a", "".
export function ancestors(field) {
  const out = [field];
  let f = field;
  while (f) {
    const cut = Math.max(f.lastIndexOf("."), f.lastIndexOf("["));
    f = cut > 0 ? f.slice(0, cut) : "";
    out.push(f);
  }
  return out;
}

export function lineColumn(text, offset) {
  let line = 1;
  let last = -1;
  for (let j = text.indexOf("\n"); j !== -1 && j < offset; j = text.indexOf("\n", j + 1)) {
    line++;
    last = j;
  }
  return { line, column: offset - last };
}

// The offset in a JSON string literal (starting at `start`, its quote) of the decoded
// string's `column` (1-based, in code points as the API counts), counting an escape as
// the one character it stands for.
export function insideString(text, start, column) {
  const high = (code) => code >= 0xd800 && code <= 0xdbff;
  let j = start + 1;
  for (let n = 1; n < column && j < text.length && text[j] !== '"'; n++) {
    if (text[j] !== "\\") j += high(text.charCodeAt(j)) ? 2 : 1;
    else if (text[j + 1] !== "u") j += 2;
    else j += high(parseInt(text.slice(j + 2, j + 6), 16)) && text[j + 7] === "u" ? 12 : 6;
  }
  return j;
}

// {line, column, exact, path} of a problem's field in `text` (an ancestor's when the
// field itself is absent, e.g. a missing key), with the rule's column when the detail
// names one ("... at column 14: ...").
export function locate(text, field, detail = "") {
  const map = paths(text);
  const path = ancestors(field || "").find((p) => map.has(p)) ?? "";
  const where = map.get(path) || { start: 0 };
  let offset = where.key !== undefined && path !== field ? where.key : where.start;
  const col = /at column (\d+)/.exec(detail);
  if (col && path === field && text[where.start] === '"') {
    offset = insideString(text, where.start, Number(col[1]));
  }
  return { ...lineColumn(text, offset), exact: path === field, path, offset };
}
