/** Words for what the model knows (pure): the status item's text, a run's result, times. */
import { IEntry, IRun } from './api';
import { Mm4Model } from './model';

/** How a run can end badly (a cancelled run is the person's own doing). */
export const FAILED = ['failed', 'timeout', 'interrupted'];

export type Tone = 'idle' | 'queued' | 'running' | 'ok' | 'bad' | 'warn';

export interface ISaid {
  text: string;
  title: string;
  tone: Tone;
}

export function clock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = `${String(s % 60).padStart(2, '0')}`;
  return h ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}

export function ago(iso: string | null, now = Date.now()): string {
  if (!iso) {
    return '';
  }
  const s = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (s < 60) {
    return 'just now';
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)} min ago`;
  }
  if (s < 86400) {
    return `${Math.floor(s / 3600)} h ago`;
  }
  return `${Math.floor(s / 86400)} d ago`;
}

/** "on mini: cell 3/7: train  0:42" (the run's progress line) as "cell 3/7 · 0:42 on mini". */
export function progress(entry: IEntry, elapsed: number): string {
  const phase = (entry.phase || 'starting').trim();
  const m = /^(?:on (.+?): )?(.*?)(?:\s+\d+:\d\d(?::\d\d)?)?$/.exec(phase);
  const place = m?.[1] || entry.executor || '';
  let what = m?.[2] || phase;
  const cell = /^cell (\d+(?:\/\d+)?)/.exec(what);
  if (cell) {
    what = `cell ${cell[1]}`;
  }
  return `${what} · ${clock(elapsed)}${place ? ' on ' + place : ''}`;
}

export function result(run: IRun, now = Date.now()): string {
  const sha = run.commit ? ` at ${run.commit.slice(0, 7)}${run.dirty ? '*' : ''}` : '';
  if (run.status === 'succeeded') {
    return `succeeded ${ago(run.finished_at, now)}${sha}`;
  }
  if (run.status === 'failed') {
    const cell = run.error?.cell;
    return cell !== undefined && cell !== null ? `failed in cell ${cell}${sha}` : `failed${sha}`;
  }
  return `${run.status} ${ago(run.finished_at || run.queued_at, now)}${sha}`;
}

export function errorText(run: IRun): string {
  const e = run.error;
  if (!e) {
    return '';
  }
  return [e.ename, e.evalue || e.message].filter(Boolean).join(': ');
}

/** The status bar item for the open notebook. */
export function statusItem(model: Mm4Model, now = Date.now()): ISaid {
  if (!model.status) {
    return { text: 'mm4: —', title: model.problem || 'mm4watch: looking…', tone: 'idle' };
  }
  const st = model.status;
  if (st.config_error) {
    return { text: 'mm4: mm4.toml broken', title: st.config_error, tone: 'bad' };
  }
  if (model.notebook === null || !model.notebook.endsWith('.ipynb')) {
    return { text: daemonWord(model), title: `mm4watch: ${st.project}`, tone: st.daemon ? 'idle' : 'warn' };
  }
  const { running, waiting } = model.entries();
  if (running) {
    const elapsed = (running.for_s ?? 0) + (now - model.fetchedAt) / 1000;
    const text = progress(running, elapsed);
    return { text: `mm4: ${text}`, title: `${running.notebook}: ${running.phase || 'starting'}`, tone: 'running' };
  }
  if (waiting.length) {
    const e = waiting[0];
    const why = e.state === 'waiting' && e.error ? ` (${e.error})` : '';
    return { text: 'mm4: queued', title: `${e.notebook}: queued by ${e.trigger}${why}`, tone: 'queued' };
  }
  const runs = model.runs;
  const last = runs?.runs[0];
  const tagged = runs?.tagged;
  const off = st.daemon ? '' : ' · daemon off';
  if (last) {
    const bad = FAILED.includes(last.status);
    const title = `${last.id}: ${last.status}` + (bad && errorText(last) ? ` (${errorText(last)})` : '');
    return { text: `mm4: ${result(last, now)}${off}`, title, tone: bad ? 'bad' : last.status === 'succeeded' ? 'ok' : 'idle' };
  }
  if (runs && tagged === false) {
    return { text: `mm4: not tagged${off}`, title: 'add "# mm4: remote" to a code cell to run it on save', tone: 'idle' };
  }
  if (runs?.tag_error) {
    return { text: 'mm4: tag unreadable', title: runs.tag_error, tone: 'warn' };
  }
  return { text: `mm4: no runs yet${off}`, title: model.runsProblem || 'tagged: a save runs it', tone: 'idle' };
}

function daemonWord(model: Mm4Model): string {
  const st = model.status!;
  if (!st.daemon) {
    return 'mm4: daemon off';
  }
  const n = st.running.length;
  return n ? `mm4: ${n} running` : 'mm4: watching';
}
