/**
 * The side panel: the open notebook's runs (sortable, with their parameters and metrics), what to do
 * with them (open the executed notebook, compare two, rerun, cancel, follow the log), and the
 * project's state in words when it is not simply "watching".
 */
import { Widget } from '@lumino/widgets';

import { api, IRun, IRunDetail, post } from './api';
import { ago, clock, errorText, progress } from './describe';
import { describeError, Mm4Model } from './model';

export interface IActions {
  openExecuted(run: IRun): void;
  openReport(): void;
  runNow(): void;
  startDaemon(): Promise<void>;
}

type Key = { kind: 'field' | 'param' | 'metric'; name: string };

const FIELDS: [string, string][] = [
  ['started_at', 'started'],
  ['status', 'status'],
  ['trigger', 'trigger'],
  ['commit', 'commit'],
  ['duration_s', 'time'],
  ['executor', 'on']
];

export class RunsPanel extends Widget {
  constructor(
    private readonly model: Mm4Model,
    private readonly actions: IActions
  ) {
    super();
    this.id = 'mm4watch-runs';
    this.title.caption = 'mm4watch: runs of this notebook';
    this.addClass('mm4-Panel');
    this.node.innerHTML = `
      <div class="mm4-Panel-head">
        <div class="mm4-Panel-title"></div>
        <div class="mm4-Panel-state" data-mm4="state"></div>
        <div class="mm4-Panel-buttons">
          <button class="jp-mod-styled" data-mm4="start">Start the daemon</button>
          <button class="jp-mod-styled jp-mod-accept" data-mm4="run">Run on the Mini…</button>
          <button class="jp-mod-styled" data-mm4="compare" disabled>Compare 2</button>
          <button class="jp-mod-styled" data-mm4="report">Report</button>
        </div>
      </div>
      <div class="mm4-Panel-table"><table data-mm4="runs"><thead></thead><tbody></tbody></table></div>
      <div class="mm4-Panel-detail" data-mm4="detail" hidden>
        <div class="mm4-Panel-detailHead"><span></span><button class="jp-mod-styled" data-mm4="close">Close</button></div>
        <pre data-mm4="text"></pre>
      </div>`;
    this._button('start').onclick = async () => {
      this._button('start').disabled = true;
      try {
        await this.actions.startDaemon();
      } finally {
        this._button('start').disabled = false;
      }
    };
    this._button('run').onclick = () => this.actions.runNow();
    this._button('report').onclick = () => this.actions.openReport();
    this._button('compare').onclick = () => void this._compare();
    this._button('close').onclick = () => this._closeDetail();
    model.changed.connect(this.render, this);
    this.render();
  }

  dispose(): void {
    this._closeDetail();
    this.model.changed.disconnect(this.render, this);
    super.dispose();
  }

  render(): void {
    const m = this.model;
    const nb = m.notebook;
    this._q('.mm4-Panel-title').textContent = nb ? nb : 'no notebook open';
    const state = this._state();
    const stateNode = this._q('[data-mm4="state"]');
    stateNode.textContent = state.text;
    stateNode.dataset.tone = state.tone;
    this._button('start').hidden = !(m.status && !m.status.daemon);
    this._button('run').disabled = !(m.status && !m.status.config_error && nb && nb.endsWith('.ipynb'));
    this._button('report').disabled = !m.status;
    this._renderTable();
    if (this._detail?.kind === 'log') {
      this._followLog();
    }
  }

  /** The selected runs' ids (for compare), newest last. */
  get selected(): string[] {
    return [...this._selected];
  }

  private _state(): { text: string; tone: string } {
    const m = this.model;
    if (!m.status) {
      return { text: m.problem || 'looking…', tone: m.problem ? 'bad' : 'idle' };
    }
    if (m.status.config_error) {
      return { text: `mm4.toml does not load: ${m.status.config_error}`, tone: 'bad' };
    }
    const parts: string[] = [];
    if (!m.status.daemon) {
      parts.push('the daemon is not running: saves and commits queue nothing until it starts');
    } else if (m.status.daemon.held) {
      parts.push(`new runs wait: ${m.status.daemon.held}`);
    }
    const { running, waiting } = m.entries();
    if (running) {
      parts.push(`running: ${progress(running, (running.for_s ?? 0) + (Date.now() - m.fetchedAt) / 1000)}`);
    }
    if (waiting.length) {
      parts.push(`${waiting.length} queued`);
    }
    if (m.runs?.tagged === false) {
      parts.push('not tagged: add "# mm4: remote" to a code cell (or the command "Tag for remote runs")');
    }
    if (m.runs?.tag_error) {
      parts.push(m.runs.tag_error);
    }
    if (m.runsProblem) {
      parts.push(m.runsProblem);
    }
    return { text: parts.join(' · ') || `watching ${m.status.project}`, tone: m.status.daemon ? 'idle' : 'warn' };
  }

  private _columns(runs: IRun[]): Key[] {
    const params = new Set<string>();
    const metrics = new Set<string>();
    for (const r of runs) {
      Object.keys(r.parameters || {}).forEach(k => params.add(k));
      Object.keys(r.metrics || {}).forEach(k => metrics.add(k));
    }
    return [
      ...FIELDS.map(([name]) => ({ kind: 'field' as const, name })),
      ...[...params].sort().map(name => ({ kind: 'param' as const, name })),
      ...[...metrics].sort().map(name => ({ kind: 'metric' as const, name }))
    ];
  }

  private _value(run: IRun, key: Key): unknown {
    if (key.kind === 'param') {
      return run.parameters?.[key.name];
    }
    if (key.kind === 'metric') {
      return run.metrics?.[key.name];
    }
    return (run as any)[key.name] ?? (key.name === 'started_at' ? run.queued_at : null);
  }

  private _sorted(runs: IRun[]): IRun[] {
    const key = this._sort;
    if (!key) {
      return runs; // newest first, as the server sends them
    }
    const sign = this._descending ? -1 : 1;
    return [...runs].sort((a, b) => {
      const x = this._value(a, key);
      const y = this._value(b, key);
      if (x === y) {
        return 0;
      }
      if (x === undefined || x === null) {
        return 1;
      }
      if (y === undefined || y === null) {
        return -1;
      }
      if (typeof x === 'number' && typeof y === 'number') {
        return sign * (x - y);
      }
      return sign * String(x).localeCompare(String(y));
    });
  }

  private _renderTable(): void {
    const runs = this.model.runs?.runs ?? [];
    const drawn = JSON.stringify([runs, this._sort, this._descending, [...this._selected], this.model.notebook]);
    if (drawn === this._drawn) {
      return; // nothing moved: the rows stay (a click in progress is not lost)
    }
    this._drawn = drawn;
    const columns = this._columns(runs);
    const head = this._q('thead');
    const body = this._q('tbody');
    const label = (k: Key) =>
      k.kind === 'field' ? FIELDS.find(f => f[0] === k.name)![1] : k.kind === 'param' ? `${k.name}` : `${k.name}`;
    head.innerHTML = '';
    const hr = document.createElement('tr');
    hr.appendChild(document.createElement('th'));
    hr.appendChild(document.createElement('th'));
    for (const k of columns) {
      const th = document.createElement('th');
      const sorted = this._sort && this._sort.kind === k.kind && this._sort.name === k.name;
      th.textContent = label(k) + (sorted ? (this._descending ? ' ▼' : ' ▲') : '');
      th.className = `mm4-col-${k.kind}`;
      th.title = k.kind === 'param' ? 'parameter' : k.kind === 'metric' ? 'metric' : '';
      th.dataset.sort = `${k.kind}:${k.name}`;
      th.onclick = () => {
        if (sorted) {
          this._descending = !this._descending;
        } else {
          this._sort = k;
          this._descending = k.kind !== 'field' || k.name === 'started_at';
        }
        this._renderTable();
      };
      hr.appendChild(th);
    }
    head.appendChild(hr);
    body.innerHTML = '';
    if (!runs.length) {
      const tr = document.createElement('tr');
      const td = document.createElement('td');
      td.colSpan = columns.length + 2;
      td.className = 'mm4-Panel-empty';
      td.textContent = this.model.notebook ? 'no runs of this notebook yet' : '';
      tr.appendChild(td);
      body.appendChild(tr);
    }
    for (const run of this._sorted(runs)) {
      body.appendChild(this._row(run, columns));
    }
    this._button('compare').disabled = this._selected.size !== 2;
  }

  private _row(run: IRun, columns: Key[]): HTMLTableRowElement {
    const tr = document.createElement('tr');
    tr.dataset.run = run.id;
    tr.dataset.status = run.status;
    const pick = document.createElement('td');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = this._selected.has(run.id);
    box.title = 'pick two to compare';
    box.onchange = () => {
      box.checked ? this._selected.add(run.id) : this._selected.delete(run.id);
      while (this._selected.size > 2) {
        this._selected.delete(this._selected.values().next().value as string);
      }
      this._renderTable();
    };
    pick.appendChild(box);
    tr.appendChild(pick);
    const acts = document.createElement('td');
    acts.className = 'mm4-Panel-actions';
    const live = run.status === 'running' || run.status === 'queued';
    if (run.folder && !live) {
      acts.appendChild(this._act('open', '↗', 'Open the executed notebook (read-only)', () => this.actions.openExecuted(run)));
    }
    acts.appendChild(this._act('log', '≡', 'Log (followed while it runs)', () => this._showLog(run)));
    if (live) {
      acts.appendChild(this._act('cancel', '✕', 'Cancel (what it wrote is kept)', () => void this._do(run, 'cancel')));
    } else {
      acts.appendChild(this._act('rerun', '↻', 'Rerun its exact input', () => void this._do(run, 'rerun')));
    }
    tr.appendChild(acts);
    for (const k of columns) {
      const td = document.createElement('td');
      td.className = `mm4-col-${k.kind}`;
      td.dataset.col = `${k.kind}:${k.name}`;
      td.textContent = this._cell(run, k);
      if (k.name === 'status') {
        td.dataset.status = run.status;
        td.title = errorText(run);
      }
      tr.appendChild(td);
    }
    return tr;
  }

  private _cell(run: IRun, k: Key): string {
    const v = this._value(run, k);
    if (k.kind === 'field') {
      switch (k.name) {
        case 'started_at':
          return ago((v as string) || run.queued_at);
        case 'commit':
          return run.commit ? run.commit.slice(0, 7) + (run.dirty ? '*' : '') : '';
        case 'duration_s':
          return typeof v === 'number' ? clock(v) : '';
        case 'status':
          return run.status === 'failed' && run.error?.cell !== undefined ? `failed (cell ${run.error.cell})` : run.status;
      }
    }
    if (v === undefined || v === null) {
      return '';
    }
    if (typeof v === 'number') {
      return Number.isInteger(v) ? String(v) : v.toPrecision(4);
    }
    return typeof v === 'string' ? v : JSON.stringify(v);
  }

  private _act(name: string, text: string, title: string, onclick: () => void): HTMLButtonElement {
    const b = document.createElement('button');
    b.className = 'jp-mod-styled mm4-act';
    b.dataset.act = name;
    b.textContent = text;
    b.title = title;
    b.onclick = onclick;
    return b;
  }

  private async _do(run: IRun, action: 'cancel' | 'rerun'): Promise<void> {
    try {
      await post(`runs/${encodeURIComponent(run.id)}/${action}`);
      this._say(action === 'cancel' ? `cancelling ${run.id}` : `running ${run.id} again`, 'idle');
    } catch (e) {
      this._say(`${action}: ${describeError(e)}`, 'bad');
    }
    void this.model.refresh();
  }

  private _say(text: string, tone: string): void {
    const node = this._q('[data-mm4="state"]');
    node.textContent = text;
    node.dataset.tone = tone;
  }

  private _showLog(run: IRun): void {
    this._closeDetail();
    this._detail = { kind: 'log', run: run.id, next: 0, live: true };
    this._openDetail(`log of ${run.id}`, '');
    this._followLog();
    this._poll = window.setInterval(() => this._followLog(), 1000);
  }

  private _followLog(): void {
    const d = this._detail;
    if (!d || d.kind !== 'log' || this._reading || !d.live) {
      return;
    }
    this._reading = true;
    api<IRunDetail>(`runs/${encodeURIComponent(d.run)}?log_from=${d.next}`)
      .then(found => {
        if (this._detail !== d) {
          return;
        }
        const pre = this._q('[data-mm4="text"]');
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.textContent += found.log;
        d.next = found.log_next;
        if (atEnd) {
          pre.scrollTop = pre.scrollHeight;
        }
        const more = found.log.length > 0;
        d.live = more || found.run.status === 'running' || found.run.status === 'queued';
        this._q('.mm4-Panel-detailHead span').textContent =
          `log of ${d.run}` + (d.live ? ' (following)' : ` (${found.run.status})`);
      })
      .catch(e => this._say(`log: ${describeError(e)}`, 'bad'))
      .finally(() => (this._reading = false));
  }

  private async _compare(): Promise<void> {
    const order = (this.model.runs?.runs ?? []).map(r => r.id); // newest first
    const [a, b] = this.selected.sort((x, y) => order.indexOf(y) - order.indexOf(x)); // A the older
    this._closeDetail();
    this._detail = { kind: 'diff', run: `${a}..${b}`, next: 0, live: false };
    this._openDetail(`${a} → ${b}`, 'comparing…');
    try {
      const found = await api<{ text: string }>(`diff?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
      this._q('[data-mm4="text"]').textContent = found.text;
    } catch (e) {
      this._q('[data-mm4="text"]').textContent = describeError(e);
    }
  }

  private _openDetail(title: string, text: string): void {
    const detail = this._q('[data-mm4="detail"]');
    detail.hidden = false;
    detail.dataset.kind = this._detail?.kind ?? '';
    this._q('.mm4-Panel-detailHead span').textContent = title;
    this._q('[data-mm4="text"]').textContent = text;
  }

  private _closeDetail(): void {
    if (this._poll !== null) {
      window.clearInterval(this._poll);
      this._poll = null;
    }
    this._detail = null;
    const detail = this.node.querySelector<HTMLElement>('[data-mm4="detail"]');
    if (detail) {
      detail.hidden = true;
    }
  }

  private _q<T extends HTMLElement = HTMLElement>(selector: string): T {
    return this.node.querySelector(selector) as T;
  }

  private _button(name: string): HTMLButtonElement {
    return this._q<HTMLButtonElement>(`[data-mm4="${name}"]`);
  }

  private _drawn = '';
  private _sort: Key | null = null;
  private _descending = true;
  private _selected = new Set<string>();
  private _detail: { kind: 'log' | 'diff'; run: string; next: number; live: boolean } | null = null;
  private _poll: number | null = null;
  private _reading = false;
}
