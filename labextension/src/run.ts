/** "Run on the Mini": which executor and which parameters, prefilled from the notebook's parameters cell. */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { NotebookPanel } from '@jupyterlab/notebook';
import { Widget } from '@lumino/widgets';

import { IStatus, post } from './api';
import { describeError } from './model';

/** The `name = value` lines of the cell tagged "parameters" (papermill's), comments dropped. */
export function parameterLines(panel: NotebookPanel | null): string[] {
  const cells = panel?.content.model?.cells;
  if (!cells) {
    return [];
  }
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    const tags = (cell.getMetadata('tags') as string[] | undefined) ?? [];
    if (cell.type === 'code' && tags.includes('parameters')) {
      return cell.sharedModel
        .getSource()
        .split('\n')
        .filter(line => /^\s*[A-Za-z_]\w*\s*=/.test(line))
        .map(line => line.trim());
    }
  }
  return [];
}

class RunForm extends Widget {
  constructor(status: IStatus, chosen: string | null, lines: string[], dirty: boolean) {
    super();
    this.addClass('mm4-RunForm');
    const executors = status.executors.length ? status.executors : [status.default_executor ?? 'default'];
    const pick = chosen && executors.includes(chosen) ? chosen : status.default_executor;
    this.node.innerHTML = `
      <label>executor <select data-mm4="executor"></select></label>
      <label>parameters, one <code>name = value</code> per line (as in the parameters cell)
        <textarea data-mm4="parameters" rows="6" spellcheck="false"></textarea></label>
      <p class="mm4-RunForm-note" data-mm4="note"></p>`;
    const select = this.node.querySelector('select')!;
    for (const name of executors) {
      const option = document.createElement('option');
      option.value = option.textContent = name;
      option.selected = name === pick;
      select.appendChild(option);
    }
    this.node.querySelector('textarea')!.value = lines.join('\n');
    this.node.querySelector('[data-mm4="note"]')!.textContent = dirty
      ? 'The notebook has unsaved changes: the run takes the file as last saved.'
      : 'The run takes the notebook as saved; its results go to a new folder.';
  }

  getValue(): { executor: string; lines: string[] } {
    return {
      executor: this.node.querySelector('select')!.value,
      lines: this.node.querySelector('textarea')!.value.split('\n')
    };
  }
}

/** Ask, then queue the run; what happened, in words (a rejected request says why). */
export async function runDialog(
  path: string,
  panel: NotebookPanel | null,
  status: IStatus,
  tagExecutor: string | null
): Promise<string | null> {
  const form = new RunForm(status, tagExecutor, parameterLines(panel), !!panel?.context.model.dirty);
  const answer = await showDialog({
    title: `Run ${path.split('/').pop()}`,
    body: form,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Run' })]
  });
  if (!answer.button.accept || !answer.value) {
    return null;
  }
  try {
    const found = await post<{ entry: number; merged_into: number | null; executor: string }>('runs', {
      notebook: path,
      executor: answer.value.executor,
      lines: answer.value.lines
    });
    const daemon = status.daemon ? '' : ' (the daemon is not running: start it to run the queue)';
    return found.merged_into
      ? `the same run as entry ${found.merged_into}, already queued${daemon}`
      : `queued on ${found.executor} as entry ${found.entry}${daemon}`;
  } catch (e) {
    throw new Error(describeError(e));
  }
}
