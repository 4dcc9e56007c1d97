// Builds STAC Browser (the npm package @radiantearth/stac-browser is its source) for `ingest serve`:
// a copy of the package in .build/ with our config.js and basemaps.config.js laid over it, built with
// the locked toolchain of this folder's node_modules into dist/. Why each overlay: see the files.
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const here = __dirname;
const pkg = path.dirname(require.resolve('@radiantearth/stac-browser/package.json'));
const work = path.join(here, '.build', 'stac-browser');
const dist = path.join(here, 'dist');

fs.rmSync(path.join(here, '.build'), { recursive: true, force: true });
fs.cpSync(pkg, work, { recursive: true });
// Its sources import ../../node_modules/ol/ol.css by relative path: give the copy our node_modules.
fs.symlinkSync(path.join(here, 'node_modules'), path.join(work, 'node_modules'), 'dir');
for (const name of ['config.js', 'basemaps.config.js']) {
  fs.copyFileSync(path.join(here, 'overlay', name), path.join(work, name));
}
// The run-time config (window.STAC_BROWSER_CONFIG) is answered by `ingest serve` at /browser/config.js
// with the API's own root URL; the package ships that script tag commented out (docs/options.md).
const index = path.join(work, 'public', 'index.html');
const html = fs.readFileSync(index, 'utf8');
const commented = '<!-- <script defer="defer" src="/config.js"></script> -->';
if (!html.includes(commented)) {
  throw new Error(`public/index.html of ${require(path.join(pkg, 'package.json')).version} has no ${commented}`);
}
// No favicon ships with the package: without a link the browser asks the API's /favicon.ico, a 404 in
// every visitor's console. An empty one says "none".
fs.writeFileSync(index, html.replace(commented, '<link rel="icon" href="data:,"><script src="/browser/config.js"></script>'));
// dist/config.js would shadow nothing (the server answers that path), but keep dist free of it.
fs.rmSync(path.join(work, 'public', 'config.js'), { force: true });

const cli = require.resolve('@vue/cli-service/bin/vue-cli-service.js');
execFileSync(process.execPath, [cli, 'build', '--dest', dist], {
  cwd: work,
  stdio: 'inherit',
  env: { ...process.env, NODE_ENV: 'production' },
});
fs.rmSync(path.join(here, '.build'), { recursive: true, force: true });
