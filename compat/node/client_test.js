'use strict';
// Drives the official IronWorker Node.js client (npm package iron_worker),
// unchanged, against a Mayfly server. Every call prints one JSON line
// {"call": NAME, "ok": true, ...}; the first failing call prints
// {"call": NAME, "ok": false, "error": ...} and the script exits 1.
//
// Environment: MAYFLY_URL (http://HOST:PORT), MAYFLY_PROJECT, MAYFLY_TOKEN.
// The worker runs on the node stack, so the server needs it built.

const fs = require('fs');
const os = require('os');
const path = require('path');
const iron_worker = require('iron_worker');

const url = new URL(process.env.MAYFLY_URL || 'http://127.0.0.1:8080');
const worker = new iron_worker.Client({
  scheme: url.protocol.replace(':', ''),
  host: url.hostname,
  port: Number(url.port || 80),
  project_id: process.env.MAYFLY_PROJECT,
  token: process.env.MAYFLY_TOKEN,
});

const CODE = 'node-compat-' + Date.now().toString(36);
const ID = /^[0-9a-f]{24}$/;

function report(call, fields) {
  process.stdout.write(JSON.stringify(Object.assign({ call, ok: true }, fields)) + '\n');
}

function fail(call, err) {
  process.stdout.write(JSON.stringify({ call, ok: false, error: String(err && err.stack || err) }) + '\n');
  process.exit(1);
}

// call runs one client method (callback style) and resolves with its body.
function call(name, fn) {
  return new Promise((resolve) => {
    try {
      fn((err, body) => {
        if (err) fail(name, err);
        resolve(body);
      });
    } catch (e) {
      fail(name, e);
    }
  });
}

function check(name, cond, what) {
  if (!cond) fail(name, new Error('check failed: ' + what));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The worker: it reads its payload, config and task id with the package's
// own helpers, as the package documents.
function makeWorkerDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mayfly-node-worker-'));
  fs.writeFileSync(path.join(dir, 'hello.js'), [
    "var iron_worker = require('iron_worker');",
    'console.log("WORKER " + JSON.stringify({params: iron_worker.params(), config: iron_worker.config(),',
    '  task_id: iron_worker.taskId(), task_dir: iron_worker.taskDir(), node: process.version}));',
    '',
  ].join('\n'));
  // The package and its dependencies travel with the worker, as a user's
  // node_modules would.
  fs.cpSync(path.join(__dirname, 'node_modules'), path.join(dir, 'node_modules'), { recursive: true });
  return dir;
}

function workerLine(log) {
  const line = String(log).split('\n').find((l) => l.startsWith('WORKER '));
  return line ? JSON.parse(line.slice('WORKER '.length)) : null;
}

async function waitDone(taskId) {
  // tasksWaitFor doubles its sleep up to a minute; a short timeout keeps
  // the number of tries bounded.
  return call('tasksWaitFor', (cb) => worker.tasksWaitFor(taskId, { timeout: 600 }, cb));
}

async function main() {
  const dir = makeWorkerDir();

  // codesUpload copies the package's upload_files (its __runner__.sh) from
  // the working directory, so it runs from the package's folder.
  const cwd = process.cwd();
  process.chdir(path.dirname(require.resolve('iron_worker/package.json')));
  const up = await call('codesUpload', (cb) => worker.codesUpload(CODE, dir, 'hello.js', cb));
  process.chdir(cwd);
  check('codesUpload', ID.test(up.id) && up.msg === 'Upload successful.', JSON.stringify(up));
  report('codesUpload', { id: up.id, msg: up.msg });
  const codeId = up.id;

  const codes = await call('codesList', (cb) => worker.codesList({ page: 0, per_page: 100 }, cb));
  check('codesList', codes.some((c) => c.id === codeId && c.name === CODE), JSON.stringify(codes));
  report('codesList', { count: codes.length });

  const code = await call('codesGet', (cb) => worker.codesGet(codeId, cb));
  check('codesGet', code.name === CODE && code.file_name === '__runner__.sh', JSON.stringify(code));
  report('codesGet', { name: code.name, runtime: code.runtime, stack: code.stack, rev: code.rev });

  const revs = await call('codesRevisions', (cb) => worker.codesRevisions(codeId, {}, cb));
  check('codesRevisions', revs.length === 1 && ID.test(revs[0].id) && revs[0].rev === code.rev, JSON.stringify(revs));
  report('codesRevisions', { count: revs.length });

  const zip = await call('codesDownload', (cb) => worker.codesDownload(codeId, {}, cb));
  check('codesDownload', String(zip).startsWith('PK'), 'a zip');
  report('codesDownload', { bytes: String(zip).length });

  // A task with payload, priority, timeout and label; it runs the worker.
  const payload = { hello: 'world', n: 42 };
  const queued = await call('tasksCreate', (cb) => worker.tasksCreate(CODE, payload, { priority: 1, timeout: 120, label: 'compat' }, cb));
  check('tasksCreate', ID.test(queued.id), JSON.stringify(queued));
  report('tasksCreate', { id: queued.id });
  const taskId = queued.id;

  const got = await call('tasksGet', (cb) => worker.tasksGet(taskId, cb));
  check('tasksGet', got.id === taskId && got.code_name === CODE && got.priority === 1 && got.timeout === 120 && got.label === 'compat',
    JSON.stringify(got));
  check('tasksGet', JSON.parse(got.payload).hello === 'world', 'payload ' + got.payload);
  report('tasksGet', { status: got.status });

  const done = await waitDone(taskId);
  check('tasksWaitFor', done.status === 'complete', JSON.stringify(done));
  check('tasksWaitFor', typeof done.duration === 'number' && typeof done.code_rev === 'string', JSON.stringify(done));
  report('tasksWaitFor', { status: done.status, duration: done.duration });

  await call('tasksWaitForLog', (cb) => worker.tasksWaitForLog(taskId, {}, cb));
  report('tasksWaitForLog', {});
  const log = await call('tasksLog', (cb) => worker.tasksLog(taskId, cb));
  const seen = workerLine(log);
  check('tasksLog', seen !== null, 'no WORKER line in log: ' + log);
  report('tasksLog', { worker: seen });
  check('worker.params', seen.params && seen.params.hello === 'world' && seen.params.n === 42, JSON.stringify(seen.params));
  report('worker.params', { params: seen.params });
  check('worker.taskId', seen.task_id === taskId, seen.task_id + ' != ' + taskId);
  report('worker.taskId', { task_id: seen.task_id });
  check('worker.taskDir', typeof seen.task_dir === 'string' && seen.task_dir !== '', JSON.stringify(seen.task_dir));
  report('worker.taskDir', { task_dir: seen.task_dir });

  const list = await call('tasksList', (cb) => worker.tasksList({ code_name: CODE, complete: 1, per_page: 100 }, cb));
  check('tasksList', list.length === 1 && list[0].id === taskId, JSON.stringify(list));
  report('tasksList', { count: list.length });

  // A delayed task stays queued: set its progress, then cancel it.
  const later = await call('tasksCreate', (cb) => worker.tasksCreate(CODE, 'plain text payload', { delay: 3600 }, cb));
  const laterGot = await call('tasksGet', (cb) => worker.tasksGet(later.id, cb));
  check('tasksCreate(delay)', laterGot.status === 'queued' && laterGot.delay === 3600, JSON.stringify(laterGot));
  report('tasksCreate(delay)', { id: later.id, status: laterGot.status });

  await call('tasksSetProgress', (cb) => worker.tasksSetProgress(later.id, { percent: 50, msg: 'half way' }, cb));
  const prog = await call('tasksGet', (cb) => worker.tasksGet(later.id, cb));
  check('tasksSetProgress', prog.percent === 50, JSON.stringify(prog));
  report('tasksSetProgress', { percent: prog.percent });

  await call('tasksCancel', (cb) => worker.tasksCancel(later.id, cb));
  const cancelled = await call('tasksGet', (cb) => worker.tasksGet(later.id, cb));
  check('tasksCancel', cancelled.status === 'cancelled', JSON.stringify(cancelled));
  report('tasksCancel', { status: cancelled.status });

  // Retry the finished task: a new task, linked to the old one.
  const retried = await call('tasksRetry', (cb) => worker.tasksRetry(taskId, 0, cb));
  check('tasksRetry', retried.tasks && ID.test(retried.tasks[0].id) && retried.tasks[0].id !== taskId, JSON.stringify(retried));
  const retryDone = await waitDone(retried.tasks[0].id);
  check('tasksRetry', retryDone.status === 'complete' && retryDone.retry_of === taskId, JSON.stringify(retryDone));
  report('tasksRetry', { id: retryDone.id, status: retryDone.status });

  // Bulk create, then cancel the whole queue of the code.
  const bulk = await call('tasksCreateBulk', (cb) => worker.tasksCreateBulk([
    { codeName: CODE, payload: { i: 1 }, options: { delay: 3600 } },
    { codeName: CODE, payload: { i: 2 }, options: { delay: 3600 } },
  ], cb));
  check('tasksCreateBulk', ID.test(bulk.id), JSON.stringify(bulk));
  report('tasksCreateBulk', { first: bulk.id });
  await call('tasksCancelAll', (cb) => worker.tasksCancelAll(codeId, cb));
  const queuedLeft = await call('tasksList', (cb) => worker.tasksList({ code_name: CODE, queued: 1 }, cb));
  check('tasksCancelAll', queuedLeft.length === 0, JSON.stringify(queuedLeft));
  report('tasksCancelAll', {});

  // The code's config reaches the worker: a new revision through the
  // client's own upload call, with the folder zipped as codesUpload zips it
  // (codesDownload reads the zip as text, so it cannot be sent back).
  const AdmZip = require('adm-zip');
  const again = new AdmZip();
  again.addLocalFolder(dir);
  const cfgUp = await call('api.codesUpload(config)', (cb) => worker.api.codesUpload({
    data: JSON.stringify({ name: CODE, file_name: '__runner__.sh', runtime: 'sh', config: JSON.stringify({ db: 'mayfly', level: 3 }) }),
    file: { buffer: again.toBuffer(), content_type: 'application/zip' },
  }, cb));
  check('api.codesUpload(config)', cfgUp.id === codeId, JSON.stringify(cfgUp));
  const cfgTask = await call('tasksCreate', (cb) => worker.tasksCreate(CODE, { with: 'config' }, {}, cb));
  const cfgDone = await waitDone(cfgTask.id);
  check('worker.config', cfgDone.status === 'complete', JSON.stringify(cfgDone));
  const cfgLog = await call('tasksLog', (cb) => worker.tasksLog(cfgTask.id, cb));
  const cfgSeen = workerLine(cfgLog);
  check('worker.config', cfgSeen && cfgSeen.config && cfgSeen.config.db === 'mayfly' && cfgSeen.config.level === 3, String(cfgLog));
  report('worker.config', { config: cfgSeen.config });

  // Schedules.
  const start = new Date(Date.now() + 3600 * 1000);
  const sch = await call('schedulesCreate', (cb) => worker.schedulesCreate(CODE, { from: 'schedule' },
    { run_every: 3600, run_times: 2, start_at: start, priority: 0, label: 'nightly' }, cb));
  check('schedulesCreate', ID.test(sch.id), JSON.stringify(sch));
  report('schedulesCreate', { id: sch.id });
  const schs = await call('schedulesList', (cb) => worker.schedulesList({ page: 0 }, cb));
  check('schedulesList', schs.some((s) => s.id === sch.id), JSON.stringify(schs));
  report('schedulesList', { count: schs.length });
  const schGot = await call('schedulesGet', (cb) => worker.schedulesGet(sch.id, cb));
  check('schedulesGet', schGot.code_name === CODE && schGot.run_every === 3600 && schGot.run_times === 2, JSON.stringify(schGot));
  report('schedulesGet', { status: schGot.status });
  await call('schedulesCancel', (cb) => worker.schedulesCancel(sch.id, cb));
  const schGone = await call('schedulesGet', (cb) => worker.schedulesGet(sch.id, cb));
  check('schedulesCancel', schGone.status === 'cancelled', JSON.stringify(schGone));
  report('schedulesCancel', { status: schGone.status });

  // tasksRun: queue, wait, then read the output (outlog).
  const out = await call('tasksRun', (cb) => worker.tasksRun(CODE, { run: 'sync' }, {}, cb));
  const runSeen = workerLine(out);
  check('tasksRun', runSeen && runSeen.params.run === 'sync', String(out));
  report('tasksRun', { params: runSeen.params });

  await call('codesDelete', (cb) => worker.codesDelete(codeId, cb));
  const after = await call('codesList', (cb) => worker.codesList({}, cb));
  check('codesDelete', !after.some((c) => c.id === codeId), JSON.stringify(after));
  report('codesDelete', {});

  fs.rmSync(dir, { recursive: true, force: true });
  report('done', {});
}

main().catch((e) => fail('main', e));
