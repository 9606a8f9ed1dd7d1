/**
 * The server extension's JSON API (mm4watch/lab/handlers.py), through Jupyter's own connection
 * settings: its token, its XSRF cookie, its base URL.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IEntry {
  id: number;
  notebook: string;
  trigger: string;
  executor: string | null;
  state: string;
  run: string | null;
  queued_at: string;
  parameters: Record<string, unknown>;
  sweep: { id: string; index: number; of: number } | null;
  error: string | null;
  for_s?: number | null;
  phase?: string | null;
  reason?: string | null;
}

export interface IStatus {
  project: string;
  prefix: string | null;
  results: string | null;
  executors: string[];
  default_executor: string | null;
  daemon: { pid: number; up_s: number; stopping: boolean; held: string | null } | null;
  config_error: string | null;
  running: IEntry[];
  waiting: IEntry[];
  parked: IEntry[];
  refused: IEntry[];
}

export interface IRun {
  id: string;
  folder: string | null;
  notebook: string;
  status: string;
  trigger: string;
  commit: string | null;
  dirty: boolean;
  queued_at: string;
  started_at: string | null;
  finished_at: string | null;
  duration_s: number | null;
  executor: string | null;
  parameters: Record<string, unknown>;
  metrics: Record<string, number>;
  error: { cell?: number; ename?: string; evalue?: string; message?: string } | null;
  sweep: { id: string; index: number; of: number } | null;
}

export interface IRuns {
  notebook: string;
  tagged: boolean | null;
  tag_error: string | null;
  tag?: Record<string, string> | null;
  runs: IRun[];
}

export interface IRunDetail {
  run: IRun;
  log: string;
  log_next: number;
}

/** An answer that is not 2xx: its status and the server's reason, in words. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
  }
}

export function settings(): ServerConnection.ISettings {
  return ServerConnection.makeSettings();
}

export function apiUrl(endPoint: string): string {
  return URLExt.join(settings().baseUrl, 'mm4watch', 'api', endPoint);
}

export async function api<T>(endPoint: string, init: RequestInit = {}): Promise<T> {
  const s = settings();
  const response = await ServerConnection.makeRequest(apiUrl(endPoint), init, s);
  const text = await response.text();
  let found: any = {};
  try {
    found = text ? JSON.parse(text) : {};
  } catch {
    found = { reason: text.slice(0, 200) };
  }
  if (!response.ok) {
    throw new ApiError(response.status, found.reason || found.message || response.statusText);
  }
  return found as T;
}

export function post<T>(endPoint: string, body: unknown = {}): Promise<T> {
  return api<T>(endPoint, { method: 'POST', body: JSON.stringify(body) });
}

/** The server-sent events' address: the token in the query when the server uses one. */
export function eventsUrl(): string {
  const s = settings();
  const url = apiUrl('events');
  return s.token ? `${url}?token=${encodeURIComponent(s.token)}` : url;
}
