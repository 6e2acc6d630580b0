// Node driver of the WebRTC acceptance test: bundles page/harness.js (JsSIP) with esbuild, serves the page on
// 127.0.0.1, starts Debian's Chromium through playwright-core (never a downloaded browser) with fake media
// devices, runs one scenario with one browser context (its own page and WebSocket) per agent, and writes
// result.json: every JsSIP event of every agent, and `error` when a step failed or timed out.
//
//   node driver.mjs SPEC.json
//
// SPEC: { "scenario": "register" | "call", "outDir": "...", "stepTimeoutMs": 15000,
//         "agents": [{ "name", "uri", "password" | "token", "wsUrl" }, ...]             (register)
//         (a `token` agent is a web agent: X-Connect-Token on its REGISTERs and INVITEs, no password)
//         "caller": { ...agent }, "callee": { ...agent } | null, "target": "sip:...",
//         "hangupBy": "caller" | "callee", "holdMs": 500 (how long the call stays up),
//         "mediaStats": false (true: before hanging up, each page records a `mediaStats` event with its
//         RTCPeerConnection's audio packet counts, ICE pair and DTLS state: media really flowed) }         (call) }
// Next to result.json: console.log (JsSIP debug output of every page) and ws-frames.log (every SIP message each
// page sent or received on its WebSocket, with a timestamp).
import { createServer } from 'node:http';
import { mkdirSync, readFileSync, writeFileSync, createWriteStream, copyFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  '--disable-features=LocalNetworkAccessChecks', '--ignore-certificate-errors',
  '--allow-loopback-in-peer-connection', // host candidates on 127.0.0.1: the only interface in the test namespace
];
const HOLD_CALL_MS = 500;
const opened = []; // every agent's browser context: its events are collected even when a step fails half-way

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const outDir = spec.outDir;
const stepTimeout = spec.stepTimeoutMs ?? 15000;
mkdirSync(outDir, { recursive: true });
const consoleLog = createWriteStream(join(outDir, 'console.log'));
const framesLog = createWriteStream(join(outDir, 'ws-frames.log'));
const started = Date.now();
const stamp = () => `${((Date.now() - started) / 1000).toFixed(3)}s`;

async function bundlePage() {
  const site = join(outDir, 'site');
  mkdirSync(site, { recursive: true });
  await build({
    entryPoints: [join(HERE, 'page', 'harness.js')],
    bundle: true, format: 'iife', platform: 'browser', target: 'chrome110',
    outfile: join(site, 'harness.js'), logLevel: 'warning',
    define: { 'process.env.NODE_ENV': '"production"' },
  });
  copyFileSync(join(HERE, 'page', 'index.html'), join(site, 'index.html'));
  return site;
}

function serve(site) {
  const types = { '.html': 'text/html', '.js': 'text/javascript' };
  const server = createServer((req, res) => {
    const file = req.url === '/' ? 'index.html' : req.url.slice(1);
    if (!(file in { 'index.html': 1, 'harness.js': 1 })) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': types[file.slice(file.lastIndexOf('.'))] });
    res.end(readFileSync(join(site, file)));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** One browser context + page per agent, its console and WebSocket frames logged under its name. */
async function openAgent(browser, baseUrl, agent) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, permissions: ['microphone'] });
  opened.push(context);
  const page = await context.newPage();
  page.on('console', (msg) => consoleLog.write(`${stamp()} [${agent.name}] ${msg.type()}: ${msg.text()}\n`));
  page.on('pageerror', (err) => consoleLog.write(`${stamp()} [${agent.name}] PAGE ERROR: ${err.stack || err}\n`));
  page.on('websocket', (ws) => {
    framesLog.write(`${stamp()} [${agent.name}] websocket open ${ws.url()}\n`);
    ws.on('framesent', (f) => framesLog.write(`${stamp()} [${agent.name}] >>> sent\n${f.payload}\n`));
    ws.on('framereceived', (f) => framesLog.write(`${stamp()} [${agent.name}] <<< received\n${f.payload}\n`));
    ws.on('socketerror', (e) => framesLog.write(`${stamp()} [${agent.name}] websocket error ${e}\n`));
    ws.on('close', () => framesLog.write(`${stamp()} [${agent.name}] websocket closed\n`));
  });
  await page.goto(baseUrl);
  await page.waitForFunction(() => window.harness !== undefined);
  return { ...agent, context, page };
}

/** Waits for agent's next event among `types` after `after` events; a `fail` type (or timeout) throws. */
async function waitFor(agent, types, fail = []) {
  const want = [...types, ...fail];
  try {
    const handle = await agent.page.waitForFunction(
      ([name, wanted]) => window.harness.events.find((e) => e.agent === name && wanted.includes(e.type)),
      [agent.name, want], { timeout: stepTimeout, polling: 50 });
    const event = await handle.jsonValue();
    if (fail.includes(event.type)) {
      throw new Error(`${agent.name}: ${event.type} (${event.cause ?? ''} ${event.status ?? ''}) while waiting for ${types}`);
    }
    return event;
  } catch (err) {
    if (err.name === 'TimeoutError') {
      throw new Error(`${agent.name}: no ${types.join('/')} within ${stepTimeout} ms`);
    }
    throw err;
  }
}

async function registerAgent(agent, opts = {}) {
  await agent.page.evaluate((a) => window.harness.start(a), {
    name: agent.name, uri: agent.uri, password: agent.password, token: agent.token, wsUrl: agent.wsUrl, ...opts });
  return waitFor(agent, ['registered'], ['registrationFailed']);
}

async function unregisterAgent(agent) {
  await agent.page.evaluate((name) => window.harness.unregister(name), agent.name);
  return waitFor(agent, ['unregistered'], ['registrationFailed']);
}

async function scenarioRegister(browser, baseUrl, steps) {
  const agents = [];
  for (const agent of spec.agents) agents.push(await openAgent(browser, baseUrl, agent));
  for (const agent of agents) {
    await registerAgent(agent);
    steps.push(`${agent.name} registered`);
  }
  for (const agent of agents) {
    await unregisterAgent(agent);
    steps.push(`${agent.name} unregistered`);
  }
}

async function scenarioCall(browser, baseUrl, steps) {
  const agents = [];
  let callee = null;
  if (spec.callee) {
    callee = await openAgent(browser, baseUrl, spec.callee);
    agents.push(callee);
    await registerAgent(callee, { autoAnswer: true });
    steps.push(`${callee.name} registered`);
  }
  const caller = await openAgent(browser, baseUrl, spec.caller);
  agents.push(caller);
  await registerAgent(caller);
  steps.push(`${caller.name} registered`);

  await caller.page.evaluate(([name, target]) => window.harness.call(name, target), [caller.name, spec.target]);
  await waitFor(caller, ['confirmed'], ['failed', 'ended']);
  steps.push(`${caller.name} confirmed`);
  if (callee) {
    await waitFor(callee, ['confirmed'], ['failed', 'ended']);
    steps.push(`${callee.name} confirmed`);
  }
  await caller.page.waitForTimeout(spec.holdMs ?? HOLD_CALL_MS);
  if (spec.mediaStats) {
    for (const agent of agents) {
      await agent.page.evaluate((name) => window.harness.mediaStats(name), agent.name);
      steps.push(`${agent.name} media stats`);
    }
  }
  const hangsUp = spec.hangupBy === 'callee' ? callee : caller;
  await hangsUp.page.evaluate((name) => window.harness.hangup(name), hangsUp.name);
  steps.push(`${hangsUp.name} hangs up`);
  await waitFor(caller, ['ended'], ['failed']);
  steps.push(`${caller.name} ended`);
  if (callee) {
    await waitFor(callee, ['ended'], ['failed']);
    steps.push(`${callee.name} ended`);
  }
  for (const agent of agents) {
    await unregisterAgent(agent);
    steps.push(`${agent.name} unregistered`);
  }
}

/** After a failed step: un-register every agent still registered (best effort, 3 s), so no stale WebSocket
 * binding of 1001/1002 outlives this run and misroutes the scenarios that follow. */
async function unregisterLeftovers() {
  await Promise.all(opened.flatMap((context) => context.pages()).map((page) => page.evaluate(() => {
    const { harness } = window;
    if (!harness) return null;
    const names = [...new Set(harness.events.filter((e) => e.type === 'registered').map((e) => e.agent))]
      .filter((name) => !harness.events.some((e) => e.agent === name && e.type === 'unregistered'));
    names.forEach((name) => harness.unregister(name));
    return new Promise((resolve) => setTimeout(resolve, names.length ? 3000 : 0));
  }).catch(() => null)));
}

const scenarios = { register: scenarioRegister, call: scenarioCall };

async function main() {
  const result = { scenario: spec.scenario, steps: [], error: null, events: [] };
  let browser = null;
  let server = null;
  try {
    const site = await bundlePage();
    server = await serve(site);
    const baseUrl = `http://127.0.0.1:${server.address().port}/`;
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS,
      chromiumSandbox: false, timeout: 30000 });
    result.browserVersion = browser.version();
    await scenarios[spec.scenario](browser, baseUrl, result.steps);
  } catch (err) {
    result.error = String(err && err.message ? err.message : err);
  }
  if (result.error) await unregisterLeftovers();
  for (const context of opened) {
    for (const page of context.pages()) {
      try {
        result.events.push(...await page.evaluate(() => window.harness ? window.harness.events : []));
      } catch (err) {
        result.error ??= `collecting events: ${err}`;
      }
    }
  }
  result.events.sort((a, b) => a.t - b.t);
  result.elapsedMs = Date.now() - started;
  writeFileSync(join(outDir, 'result.json'), JSON.stringify(result, null, 2));
  if (browser) await browser.close().catch(() => {});
  if (server) server.close();
  await new Promise((r) => consoleLog.end(r));
  await new Promise((r) => framesLog.end(r));
  console.log(`${spec.scenario}: ${result.error ? `FAILED: ${result.error}` : 'ok'} in ${result.elapsedMs} ms ` +
    `(${result.steps.join(', ')})`);
  process.exitCode = result.error ? 1 : 0;
}

main();
