// A real Automerge client for the Python tests: one JSON request a line on stdin, one JSON
// answer a line on stdout. Documents are held here by name; bytes cross as base64.
//   {op: "new", doc, actor?}                -> {heads}
//   {op: "change", doc, fn}                 -> {heads}     fn: a JS function body over `d` (and A, the library)
//   {op: "many", doc, n, fn}                -> {heads}     n changes, fn also gets `i`
//   {op: "save", doc}                       -> {bytes}     save(): a whole-document chunk
//   {op: "since", doc, heads}               -> {changes}   getChangesSince, concatenated
//   {op: "each", doc}                       -> {changes: [b64, ...]} getAllChanges, one by one
//   {op: "apply", doc, changes}             -> {heads, missing} loadIncremental (missing deps are queued)
//   {op: "load", doc, changes}              -> {heads}     Automerge.load: throws when a dep is missing
//   {op: "state", doc}                      -> {heads, json, missing}
//   {op: "hash", changes}                   -> {hashes}    decodeChange of each chunk
"use strict";
const A = require("@automerge/automerge");
const readline = require("readline");

const docs = new Map();
const b64 = (bytes) => Buffer.from(bytes).toString("base64");
const bytes = (text) => new Uint8Array(Buffer.from(text, "base64"));
const concat = (chunks) => b64(Buffer.concat(chunks.map((c) => Buffer.from(c))));
const doc = (name) => {
  if (!docs.has(name)) throw new Error(`no document ${name}`);
  return docs.get(name);
};

const ops = {
  new: (r) => {
    docs.set(r.doc, r.actor ? A.init({ actor: r.actor }) : A.init());
    return { heads: A.getHeads(docs.get(r.doc)) };
  },
  change: (r) => {
    const fn = new Function("d", "A", r.fn);
    docs.set(r.doc, A.change(doc(r.doc), (d) => fn(d, A)));
    return { heads: A.getHeads(docs.get(r.doc)) };
  },
  many: (r) => {
    const fn = new Function("d", "A", "i", r.fn);
    let d = doc(r.doc);
    for (let i = 0; i < r.n; i++) d = A.change(d, (x) => fn(x, A, i));
    docs.set(r.doc, d);
    return { heads: A.getHeads(d) };
  },
  save: (r) => ({ bytes: b64(A.save(doc(r.doc))) }),
  since: (r) => ({ changes: concat(A.getChangesSince(doc(r.doc), r.heads || [])) }),
  each: (r) => ({ changes: A.getAllChanges(doc(r.doc)).map(b64) }),
  apply: (r) => {
    const base = docs.has(r.doc) ? docs.get(r.doc) : A.init();
    const next = A.loadIncremental(base, bytes(r.changes));
    docs.set(r.doc, next);
    return { heads: A.getHeads(next), missing: A.getMissingDeps(next, []) };
  },
  load: (r) => {
    docs.set(r.doc, A.load(bytes(r.changes)));
    return { heads: A.getHeads(docs.get(r.doc)) };
  },
  state: (r) => {
    const d = doc(r.doc);
    return { heads: A.getHeads(d), json: A.toJS(d), missing: A.getMissingDeps(d, []) };
  },
  hash: (r) => ({ hashes: r.changes.map((c) => A.decodeChange(bytes(c)).hash) }),
};

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let answer;
  try {
    const r = JSON.parse(line);
    answer = { ok: ops[r.op](r) };
  } catch (e) {
    answer = { error: String(e && e.message ? e.message : e) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
});
