// console.mjs - the operator console in a real browser (Debian's chromium,
// headless, driven by puppeteer-core), against a real orproxy in front of the
// fake upstream.  Started by tests/ui/run.sh, which owns the processes; this
// script only talks to them over loopback.
//
// Environment: ORP_URL, ADMIN_KEY, SEED_KEY, LEDGER (the SQLite file),
// CHROMIUM, SCREENS (directory for screenshots), DOWNLOADS (a scratch dir).
//
// It fails (exit 1, with the reason) when the console shows a figure that
// differs from the ledger, when a key made or revoked in the UI does not
// behave, or on any browser console error or page error.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const BASE = process.env.ORP_URL;
const ADMIN_KEY = process.env.ADMIN_KEY;
const SEED_KEY = process.env.SEED_KEY;
const LEDGER = process.env.LEDGER;
const SCREENS = process.env.SCREENS;
const DOWNLOADS = process.env.DOWNLOADS;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let step = 'start';

function fail(msg) {
  throw new Error(`[${step}] ${msg}`);
}
function check(cond, msg) {
  if (!cond) fail(msg);
}

// ---------- the ledger, read with the sqlite3 CLI ----------

function ledger(sql) {
  const out = execFileSync('sqlite3', ['-readonly', '-json', LEDGER, sql], { encoding: 'utf8' });
  return out.trim() ? JSON.parse(out) : [];
}

// Waits until the ledger holds n rows and no more arrive for a second (the
// writer is asynchronous and batches).
async function ledgerSettles(n) {
  let last = -1, same = 0;
  for (let i = 0; i < 150; i++) {
    const c = ledger('SELECT count(*) AS n FROM requests')[0].n;
    same = c === last ? same + 1 : 0;
    if (c >= n && same >= 10) return c;
    last = c;
    await sleep(100);
  }
  fail(`the ledger did not settle at ${n} rows (has ${last})`);
}

// "0.000492" -> 492000000n picodollars, exactly (no floating point).
function usdToPusd(s) {
  const m = /^\$?(\d+)(?:\.(\d{0,12}))?$/.exec(String(s).trim());
  if (!m) fail(`not a USD amount: ${JSON.stringify(s)}`);
  return BigInt(m[1]) * 10n ** 12n + BigInt((m[2] || '').padEnd(12, '0'));
}

// ---------- the proxy, as a client would call it ----------

async function chat(key, extra = {}) {
  const res = await fetch(BASE + '/v1/chat/completions', {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + key, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], ...extra }),
  });
  await res.text();
  return res.status;
}

async function admin(p) {
  const res = await fetch(BASE + '/admin/v1/' + p, { headers: { Authorization: 'Bearer ' + ADMIN_KEY } });
  check(res.ok, `GET /admin/v1/${p}: ${res.status}`);
  return res.json();
}

// Polls until f() is true or ms pass.
async function eventually(ms, f, what) {
  const end = Date.now() + ms;
  for (;;) {
    if (await f()) return;
    if (Date.now() > end) fail(`not within ${ms} ms: ${what}`);
    await sleep(100);
  }
}

// ---------- CSV ----------

function parseCSV(text) {
  const rows = [];
  let row = [], field = '', q = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (q) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (c === '"') q = false;
      else field += c;
    } else if (c === '"') q = true;
    else if (c === ',') { row.push(field); field = ''; }
    else if (c === '\r' && text[i + 1] === '\n') { row.push(field); rows.push(row); row = []; field = ''; i++; }
    else if (c === '\n') { row.push(field); rows.push(row); row = []; field = ''; }
    else field += c;
  }
  if (field !== '' || row.length) { row.push(field); rows.push(row); }
  return rows;
}

// ---------- the browser ----------

const problems = [];
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM,
  headless: true,
  // --no-sandbox: the test runs as root in CI, where chromium's sandbox refuses to start.
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--no-default-browser-check',
    '--disable-background-networking', '--disable-extensions', '--disable-sync', '--lang=en-US'],
});
let page;

async function shot(name) {
  await page.screenshot({ path: path.join(SCREENS, name + '.png'), fullPage: true });
}

async function text(sel) {
  await page.waitForSelector(sel, { timeout: 10000 });
  return page.$eval(sel, (el) => el.textContent.trim());
}

// A fresh load of the page (a hash change alone would leave the old page's
// elements for readySel to find); the tab's sessionStorage stays.
async function visit(hash, readySel) {
  await page.goto('about:blank');
  await page.goto(BASE + '/ui/' + hash, { waitUntil: 'networkidle0' });
  if (readySel) await page.waitForSelector(readySel, { timeout: 10000 });
}

async function clientRow(name) {
  return `tr[data-client="${name}"]`;
}

// Creates a client through the form; returns its key as the UI shows it.
async function createInUI(name) {
  await visit('#/clients', '#new-client');
  await page.click('#new-client');
  await page.waitForSelector('dialog[open] .client-form');
  await page.type('dialog .client-form input[name=name]', name);
  await page.type('dialog .client-form input[name=budget_usd_day]', '2.50');
  await page.type('dialog .client-form textarea[name=system_prompt]', 'Answer briefly.');
  await page.click('#save-client');
  const key = await text('dialog[open] #new-key');
  check(/^\S{20,}$/.test(key), `${name}: the key shown is ${JSON.stringify(key)}`);
  await page.click('dialog[open] .actions button.quiet');
  await page.waitForSelector(await clientRow(name), { timeout: 10000 });
  return key;
}

// auth.mode = "none" (run.sh's second orproxy): no login, the pages just work.
async function openConsole() {
  step = 'auth none';
  await visit('#/overview', '#spend-today');
  check(await page.$eval('#login', (l) => l.hidden), 'a login form with auth.mode none');
  check((await text('#spend-today')) !== '', 'no spend figure');
  await visit('#/clients', await clientRow('seed'));
  await shot('auth-none-clients');
  check(problems.length === 0, 'browser problems:\n  ' + problems.join('\n  '));
  console.log('ui: ok (auth.mode none: the console works without a key)');
}

// auth.mode = "keys": the whole walk.
async function keysRun() {
  // 1. Traffic from the config client: three answers, a stream, an upstream 400.
  step = 'traffic';
  for (let i = 0; i < 2; i++) check((await chat(SEED_KEY)) === 200, 'seed request not 200');
  // A "user" with a comma, quotes and a line break: the CSV export must quote it.
  check((await chat(SEED_KEY, { user: 'ui "test",\nline two' })) === 200, 'seed request with a user not 200');
  check((await chat(SEED_KEY, { stream: true })) === 200, 'seed stream not 200');
  check((await chat(SEED_KEY, { fake: { status: 400 } })) === 400, 'the fake error did not pass through');
  const nRows = await ledgerSettles(5);
  const spent = BigInt(ledger('SELECT coalesce(sum(cost_pusd),0) AS s FROM requests')[0].s);
  check(spent > 0n, 'the ledger recorded no cost');

  // 2. Log in; the overview equals the ledger.
  step = 'login';
  await visit('#/overview', 'input[name=admin_key]');
  check(await page.$eval('#view', (v) => v.children.length === 0), 'data shown before login');
  await page.type('input[name=admin_key]', ADMIN_KEY);
  await page.keyboard.press('Enter');
  step = 'overview';
  await page.waitForSelector('#spend-today', { timeout: 10000 });
  check(await page.evaluate(() => sessionStorage.getItem('orproxy_admin_key') !== null), 'key not in sessionStorage');
  check(!page.url().includes(ADMIN_KEY) && (await page.cookies()).length === 0, 'the key leaked into the URL or a cookie');
  const day = new Date().toISOString().slice(0, 10);
  for (const id of ['#spend-today', '#spend-month', '#spend-30d']) {
    const shown = await text(id);
    if (id !== '#spend-30d' && new Date().toISOString().slice(0, 10) !== day) continue; // midnight passed
    check(usdToPusd(shown) === spent, `${id} shows ${shown}, the ledger sums ${spent} pusd`);
  }
  check((await text('#requests-30d')).replace(/,/g, '') === String(nRows),
    `requests card ${await text('#requests-30d')} != ${nRows} ledger rows`);
  const ov = await admin('overview');
  const meters = await page.$$eval('.budget meter', (m) => m.length);
  check(Array.isArray(ov.budgets) && ov.budgets.length >= 2, 'the overview lists no budgets (global month, seed day)');
  check(meters === ov.budgets.length, `${meters} budget bars for ${ov.budgets.length} budgets`);
  // The chart drew bars: pixels of the first series' colour on its canvas.
  await page.waitForSelector('#spend-chart canvas', { timeout: 10000 });
  const painted = await page.$eval('#spend-chart canvas', (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4)
      if (d[i + 3] > 200 && Math.abs(d[i] - 0x3b) < 12 && Math.abs(d[i + 1] - 0x6f) < 12 && Math.abs(d[i + 2] - 0xd4) < 12) n++;
    return n;
  });
  check(painted > 20, `the spend chart has ${painted} pixels of series colour`);
  await shot('overview');
  // The day buckets, by model, from their stable URL.
  await visit('#/overview?bucket=day&by=model', '#spend-chart canvas');
  check(await page.$eval('select[name=by]', (s) => s.value === 'model'), 'by=model not kept from the URL');
  await shot('overview-day-model');

  // 3. The config client is read-only.
  step = 'config client';
  await visit('#/clients', await clientRow('seed'));
  const seedRow = await clientRow('seed');
  check(await page.$eval(seedRow, (tr) => tr.dataset.source === 'config' && /read-only/.test(tr.textContent) &&
    tr.querySelectorAll('button[data-action]').length === 0), 'the config client is not shown read-only');

  // 4. Create a client in the UI: its key works; revoke it in the UI: 401.
  step = 'create';
  const madeKey = await createInUI('ui-made');
  check((await chat(madeKey)) === 200, 'the key made in the UI is refused');
  await shot('clients');
  step = 'revoke';
  await page.click(`${await clientRow('ui-made')} button[data-action=revoke]`);
  await page.waitForSelector('dialog[open] button[data-confirm]');
  await page.click('dialog[open] button[data-confirm]');
  await page.waitForFunction(() => /ui-made revoked/.test(document.getElementById('status').textContent), { timeout: 10000 });
  await eventually(1000, async () => (await chat(madeKey)) === 401, 'the revoked key gets 401');

  // 5. Rotate another one with a 3 s grace: both keys work, then only the new one.
  step = 'rotate';
  const oldKey = await createInUI('ui-rot');
  check((await chat(oldKey)) === 200, 'ui-rot key refused');
  await page.click(`${await clientRow('ui-rot')} button[data-action=rotate]`);
  await page.waitForSelector('dialog[open] input[name=grace_s]');
  await page.$eval('dialog[open] input[name=grace_s]', (i) => { i.value = ''; });
  await page.type('dialog[open] input[name=grace_s]', '3');
  const rotatedAt = Date.now();
  await page.click('#do-rotate');
  const newKey = await text('dialog[open] #new-key');
  check(newKey !== oldKey, 'rotation showed the old key');
  check((await chat(newKey)) === 200, 'the new key is refused');
  check((await chat(oldKey)) === 200, 'the old key is refused within its grace period');
  check(Date.now() - rotatedAt < 3000, 'too slow to test the grace period');
  await sleep(Math.max(0, rotatedAt + 4500 - Date.now()));
  check((await chat(oldKey)) === 401, 'the old key still works after its grace period');
  check((await chat(newKey)) === 200, 'the new key stopped working');
  await page.click('dialog[open] .actions button.quiet');

  // 5b. Edit it in the UI: a limit, an expiry, the context; the API shows them,
  // the defaults set at creation stay, and its key still works.
  step = 'edit';
  await visit('#/clients', await clientRow('ui-rot'));
  await page.click(`${await clientRow('ui-rot')} button[data-action=edit]`);
  await page.waitForSelector('dialog[open] .client-form input[name=rpm]');
  await page.type('dialog[open] input[name=rpm]', '30');
  await page.$eval('dialog[open] input[name=expires_at]', (i) => { i.value = '2030-01-02T03:04'; });
  await page.type('dialog[open] textarea[name=context]', 'Project notes');
  await page.click('#save-client');
  await page.waitForFunction(() => !document.getElementById('dialog').open, { timeout: 10000 });
  const edited = (await admin('clients')).clients.find((c) => c.name === 'ui-rot');
  check(edited && edited.rpm === 30, 'rpm not saved: ' + JSON.stringify(edited));
  check(Date.parse(edited.expires_at) === Date.parse('2030-01-02T03:04:00Z'), 'expiry not saved: ' + edited.expires_at);
  check(edited.defaults && edited.defaults.context === 'Project notes' &&
    edited.defaults.system_prompt === 'Answer briefly.', 'defaults: ' + JSON.stringify(edited.defaults));
  check(edited.budget_usd_day && usdToPusd(edited.budget_usd_day) === 2500000000000n, 'budget lost: ' + edited.budget_usd_day);
  check((await chat(newKey)) === 200, 'the key stopped working after an edit');

  // 6. The requests table exports to CSV: the same rows and values as the ledger.
  step = 'csv';
  const total = await ledgerSettles(nRows + 6); // 6 answered; refusals may add rows
  await visit('#/requests?live=0', '[data-table=requests] tbody tr');
  await shot('requests');
  const cdp = await page.createCDPSession();
  await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: DOWNLOADS });
  await page.click('[data-table=requests] button.csv');
  const file = path.join(DOWNLOADS, 'requests.csv');
  await eventually(5000, () => fs.existsSync(file) && fs.statSync(file).size > 0, 'requests.csv downloaded');
  const csv = parseCSV(fs.readFileSync(file, 'utf8'));
  const head = csv[0];
  const rows = csv.slice(1).map((r) => Object.fromEntries(head.map((k, i) => [k, r[i]])));
  const led = ledger('SELECT * FROM requests ORDER BY id DESC');
  check(rows.length === total && led.length === total, `CSV has ${rows.length} rows, the ledger ${led.length}`);
  check(head.includes('cost_usd') && head.includes('client') && head.includes('status'), 'CSV header: ' + head.join(','));
  let compared = 0;
  rows.forEach((r, i) => {
    const l = led[i];
    for (const k of head) {
      if (k === 'cost_usd') {
        check(usdToPusd(r[k] || '0') === BigInt(l.cost_pusd ?? 0), `row ${l.id} cost ${r[k]} vs ${l.cost_pusd} pusd`);
        compared++;
      } else if (k in l) {
        const want = l[k] === null ? '' : String(l[k]);
        const same = r[k] === want || (want !== '' && r[k] !== '' && Number(r[k]) === Number(want));
        check(same, `row ${l.id} ${k}: CSV ${JSON.stringify(r[k])}, ledger ${JSON.stringify(want)}`);
        compared++;
      }
    }
  });
  check(compared > total * 5, `only ${compared} CSV cells matched ledger columns`);
  check(rows.some((r) => r.user === 'ui "test",\nline two'), 'the quoted user did not survive the CSV');
  // A row click shows the whole ledger row.
  await page.click('[data-table=requests] tbody tr');
  await page.waitForSelector('dialog[open] dl.kv');
  check(await page.$$eval('dialog[open] dl.kv dt', (d) => d.length) >= head.length, 'row detail is not the whole row');
  await page.click('dialog[open] .actions button.quiet');
  // Filters live in the URL.
  await visit('#/requests?live=0&status=400', '[data-table=requests]');
  const statuses = await page.$$eval('[data-table=requests] tbody tr td:nth-child(4)', (t) => t.map((x) => x.textContent));
  check(statuses.length === ledger('SELECT count(*) AS n FROM requests WHERE status = 400')[0].n &&
    statuses.every((s) => s === '400'), 'status filter: ' + statuses.join(','));

  // The outcome filter, picked in the form, lands in the URL.
  await visit('#/requests?live=0', '[data-table=requests] tbody tr');
  await page.select('form.filters select[name=outcome]', 'upstream_error');
  await page.click('form.filters button[type=submit]');
  await page.waitForFunction(() => location.hash.includes('outcome=upstream_error'), { timeout: 5000 });
  await page.waitForFunction((n) => document.querySelectorAll('[data-table=requests] tbody tr').length === n,
    { timeout: 5000 }, ledger("SELECT count(*) AS n FROM requests WHERE outcome = 'upstream_error'")[0].n);

  // 7. The other pages render.
  step = 'pages';
  await visit('#/models', '[data-table=models] tbody tr');
  await shot('models');
  await visit('#/health', 'dl.kv');
  await shot('health');

  // 8. Logging out forgets the key.
  await page.click('#logout');
  check(await page.evaluate(() => sessionStorage.getItem('orproxy_admin_key') === null), 'logout kept the key');
  check(problems.length === 0, 'browser problems:\n  ' + problems.join('\n  '));
  console.log(`ui: ok (${total} ledger rows, spend ${spent} pusd, ${compared} CSV cells compared)`);
}

try {
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('requestfailed', (r) => { if (!r.url().startsWith('blob:')) problems.push('request failed: ' + r.url()); });
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith('/ui/')) {
      const hd = r.headers();
      if (hd['content-security-policy'] !== "default-src 'self'" || hd['x-frame-options'] !== 'DENY' ||
          hd['x-content-type-options'] !== 'nosniff')
        problems.push('missing security headers on ' + u.pathname);
    }
  });

  if (process.env.MODE === 'none') await openConsole();
  else await keysRun();
} catch (e) {
  console.error(e.message.startsWith('[') ? 'ui: FAIL ' + e.message : `ui: FAIL [${step}] ${e.message}`);
  if (problems.length) console.error('browser problems:\n  ' + problems.join('\n  '));
  try { if (page) await shot('failure'); } catch { /* the page is gone */ }
  process.exitCode = 1;
} finally {
  await browser.close();
}
