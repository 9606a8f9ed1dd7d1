/**
 * What the page knows of the project: the status snapshot, the current notebook's runs, and which
 * runs ended since the last look. One EventSource per page feeds it (the server's one watcher says
 * when something moved); nothing here polls the disk.
 */
import { Signal } from '@lumino/signaling';

import { api, ApiError, eventsUrl, IEntry, IRun, IRuns, IStatus } from './api';

export class Mm4Model {
  /** The status snapshot, null while there is none (then `problem` says why). */
  status: IStatus | null = null;
  /** Why there is no status: not an mm4watch project, the server extension not running. */
  problem: string | null = null;
  /** The notebook the person looks at (as Lab names it) and its runs. */
  notebook: string | null = null;
  runs: IRuns | null = null;
  runsProblem: string | null = null;
  /** When the snapshot was taken (ms), to count a running run's time on. */
  fetchedAt = 0;

  readonly changed = new Signal<this, void>(this);
  readonly runEnded = new Signal<this, IRun>(this);

  constructor(private readonly isOpen: (labPath: string) => boolean) {}

  start(): void {
    this._connect();
    void this.refresh();
  }

  dispose(): void {
    this._events?.close();
    this._events = null;
    Signal.clearData(this);
  }

  setNotebook(path: string | null): void {
    if (path === this.notebook) {
      return;
    }
    this.notebook = path;
    this.runs = null;
    this.runsProblem = null;
    this.changed.emit();
    void this.refresh();
  }

  /** A notebook's path inside the project (as queue entries name it), null when outside it. */
  projectPath(labPath: string): string | null {
    const prefix = this.status?.prefix;
    if (prefix === null || prefix === undefined || prefix === '') {
      return labPath;
    }
    return labPath.startsWith(prefix + '/') ? labPath.slice(prefix.length + 1) : null;
  }

  labPath(projectPath: string): string {
    const prefix = this.status?.prefix;
    return prefix ? `${prefix}/${projectPath}` : projectPath;
  }

  /** The current notebook's running and waiting entries. */
  entries(): { running: IEntry | null; waiting: IEntry[] } {
    const key = this.notebook === null ? null : this.projectPath(this.notebook);
    if (!this.status || key === null) {
      return { running: null, waiting: [] };
    }
    return {
      running: this.status.running.find(e => e.notebook === key) ?? null,
      waiting: this.status.waiting.filter(e => e.notebook === key)
    };
  }

  /** Look again (coalesced: one look at a time, one more if asked during it). */
  refresh(): Promise<void> {
    if (this._inFlight) {
      this._again = true;
      return this._inFlight;
    }
    this._inFlight = this._look().finally(() => {
      this._inFlight = null;
      if (this._again) {
        this._again = false;
        void this.refresh();
      }
    });
    return this._inFlight;
  }

  private async _look(): Promise<void> {
    const notebook = this.notebook;
    const [status, runs] = await Promise.all([
      api<IStatus>('status').then(
        s => ({ ok: s, problem: null as string | null }),
        e => ({ ok: null, problem: describeError(e) })
      ),
      notebook && notebook.endsWith('.ipynb')
        ? api<IRuns>(`runs?notebook=${encodeURIComponent(notebook)}&limit=200`).then(
            r => ({ ok: r, problem: null as string | null }),
            e => ({ ok: null, problem: describeError(e) })
          )
        : Promise.resolve({ ok: null, problem: null })
    ]);
    this.status = status.ok;
    this.problem = status.problem;
    this.fetchedAt = Date.now();
    if (notebook === this.notebook) {
      this.runs = runs.ok;
      this.runsProblem = runs.problem;
    }
    const ended = this._ended();
    this.changed.emit();
    for (const id of ended) {
      void this._tellEnded(id);
    }
  }

  /** Runs that were running or waiting at the last look and are neither now. */
  private _ended(): string[] {
    const now = new Map<number, IEntry>();
    for (const e of [...(this.status?.running ?? []), ...(this.status?.waiting ?? [])]) {
      now.set(e.id, e);
    }
    const ended: string[] = [];
    for (const [id, was] of this._active) {
      const still = now.get(id);
      const run = still?.run ?? was.run;
      if (!still && run && this.isOpen(this.labPath(was.notebook))) {
        ended.push(run);
      }
    }
    if (this.status) {
      this._active = now;
    }
    return ended;
  }

  private async _tellEnded(runId: string): Promise<void> {
    for (let i = 0; i < 20; i++) {
      try {
        const found = await api<{ run: IRun }>(`runs/${encodeURIComponent(runId)}`);
        if (!['queued', 'running'].includes(found.run.status)) {
          this.runEnded.emit(found.run);
          return;
        }
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 404) {
          return;
        }
      }
      await new Promise(resolve => setTimeout(resolve, 500)); // the final record is being written
    }
  }

  private _connect(): void {
    if (typeof EventSource === 'undefined') {
      return;
    }
    const events = new EventSource(eventsUrl(), { withCredentials: true });
    events.addEventListener('change', () => {
      if (this._timer === null) {
        this._timer = window.setTimeout(() => {
          this._timer = null;
          void this.refresh();
        }, 30);
      }
    });
    events.onopen = () => void this.refresh(); // after a reconnect: what moved meanwhile
    this._events = events;
  }

  private _events: EventSource | null = null;
  private _timer: number | null = null;
  private _inFlight: Promise<void> | null = null;
  private _again = false;
  private _active = new Map<number, IEntry>();
}

export function describeError(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 404 && /not an mm4watch project/.test(e.message)) {
      return e.message;
    }
    if (e.status === 404) {
      return 'the mm4watch server extension is not running (`jupyter server extension enable mm4watch.lab`, then restart JupyterLab)';
    }
    return e.message;
  }
  return `the server does not answer (${String(e)})`;
}
