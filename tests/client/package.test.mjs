// The client module as an npm package: `npm pack ./static` makes a tarball, a scratch
// project installs it (offline: it has no dependencies) and imports it by name from
// Node, the way an app would. Against a real backend (EDGE_CHAT_URL, set by run.sh) the
// installed copy also joins a room and gets its message stored.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const STATIC = join(ROOT, 'static');
const BASE = (process.env.EDGE_CHAT_URL || '').replace(/\/+$/, '');
const manifest = JSON.parse(readFileSync(join(STATIC, 'package.json'), 'utf8'));

let scratch;
let packed;

const npm = (args, cwd) =>
  execFileSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });

before(() => {
  scratch = mkdtempSync(join(tmpdir(), 'edge-chat-package-'));
  // `npm pack --json` lists what went into the tarball.
  [packed] = JSON.parse(npm(['pack', STATIC, '--json', '--pack-destination', scratch], scratch));
  writeFileSync(
    join(scratch, 'package.json'),
    JSON.stringify({ name: 'scratch-app', private: true, type: 'module' }),
  );
  npm(['install', '--offline', join(scratch, packed.filename)], scratch);
});

after(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

test('the tarball holds the module, its types, its README and package.json, nothing else', () => {
  assert.equal(packed.name, manifest.name);
  assert.deepEqual(packed.files.map((f) => f.path).sort(), [
    'README.md',
    'edge-chat.d.ts',
    'edge-chat.js',
    'package.json',
  ]);
  assert.deepEqual(manifest.dependencies ?? {}, {}, 'the package has no dependencies');
});

test('the installed package is the same module as static/, and its types resolve', () => {
  const installed = join(scratch, 'node_modules', manifest.name);
  for (const file of ['edge-chat.js', 'edge-chat.d.ts']) {
    assert.equal(readFileSync(join(installed, file), 'utf8'), readFileSync(join(STATIC, file), 'utf8'), file);
  }
  const own = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8'));
  assert.equal(own.exports['.'].types, './edge-chat.d.ts');
  // What a TypeScript or bundler user's resolver reads: the types file the manifest names exists.
  readFileSync(join(installed, own.types), 'utf8');
});

test('an app imports it by name from Node (ES module, through "exports")', () => {
  // A child Node process in the scratch project, so resolution starts there, as in an app.
  const out = execFileSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import * as m from '${manifest.name}';
       import { EdgeChat } from '${manifest.name}';
       console.log(JSON.stringify({ keys: Object.keys(m).sort(), isClass: typeof EdgeChat === 'function' }));`,
    ],
    { cwd: scratch, encoding: 'utf8' },
  );
  const { keys, isClass } = JSON.parse(out);
  assert.ok(isClass);
  for (const name of ['EdgeChat', 'DEFAULTS', 'RefusedError', 'ClosedError', 'socketUrl']) {
    assert.ok(keys.includes(name), `${name} is exported (got ${keys})`);
  }
  // And the manifest's "main" for older resolvers, through CommonJS resolution.
  const req = createRequire(join(scratch, 'package.json'));
  assert.equal(req.resolve(manifest.name), join(scratch, 'node_modules', manifest.name, 'edge-chat.js'));
});

test(
  'the installed package chats with a real backend',
  { skip: BASE ? false : 'EDGE_CHAT_URL is not set (tests/client/run.sh sets it)', timeout: 60_000 },
  () => {
    // ws comes from tests/client's own install: the package has no dependencies, so the
    // app brings its WebSocket (Node 20 has no global one).
    const ws = pathToFileURL(createRequire(import.meta.url).resolve('ws')).href;
    const room = `pkg-${Date.now().toString(36)}`;
    const out = execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { EdgeChat } from '${manifest.name}';
         const { default: WebSocket } = await import(${JSON.stringify(ws)});
         const chat = new EdgeChat({ base: ${JSON.stringify(BASE)}, room: ${JSON.stringify(room)}, name: 'pkg', WebSocket });
         const stored = await chat.send('from the package');
         const page = await chat.history(undefined, 10);
         chat.close();
         console.log(JSON.stringify({ stored, page: page.messages.map((m) => m.message) }));`,
      ],
      { cwd: scratch, encoding: 'utf8', timeout: 45_000 },
    );
    const { stored, page } = JSON.parse(out);
    assert.equal(stored.message, 'from the package');
    assert.equal(stored.seq, 1);
    assert.deepEqual(page, ['from the package']);
  },
);
