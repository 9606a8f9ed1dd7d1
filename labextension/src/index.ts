/**
 * mm4watch inside JupyterLab: a status bar item for the open notebook, a side panel of its runs,
 * commands in the palette and the notebook toolbar, and a notification when a run of an open
 * notebook ends. Everything comes from the server extension (mm4watch/lab) under /mm4watch/api/.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, Notification, ToolbarButton } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';

import { IRun, post } from './api';
import { errorText, FAILED, result } from './describe';
import { describeError, Mm4Model } from './model';
import { RunsPanel } from './panel';
import { runDialog } from './run';
import { StatusItem } from './status';

const ICON = new LabIcon({
  name: 'mm4watch:icon',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<rect x="3" y="5" width="18" height="12" rx="2" fill="none" stroke="#616161" stroke-width="2"/>' +
    '<rect x="8" y="19" width="8" height="2" rx="1"/><path d="M10 8l5 3-5 3z"/></g></svg>'
});

const TAG = '# mm4: remote';

namespace CommandIDs {
  export const run = 'mm4watch:run';
  export const tag = 'mm4watch:tag';
  export const panel = 'mm4watch:open-panel';
  export const start = 'mm4watch:start-daemon';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'mm4watch:plugin',
  description: 'A notebook’s runs on the Mini, live progress and results beside the notebook.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [IStatusBar, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null
  ) => {
    const isOpen = (path: string) => !!tracker.find(p => p.context.path === path);
    const model = new Mm4Model(isOpen);
    const current = (): NotebookPanel | null => tracker.currentWidget;

    const openExecuted = async (run: IRun) => {
      if (!run.folder) {
        return;
      }
      const widget = await app.commands.execute('docmanager:open', { path: `${run.folder}/executed.ipynb` });
      if (widget instanceof NotebookPanel) {
        await widget.context.ready;
        widget.content.model!.readOnly = true; // a result is never edited: nor its cells
        for (const cell of widget.content.widgets) {
          cell.readOnly = true;
        }
        widget.title.caption = `${run.id} (executed, read-only)`;
      }
    };
    const startDaemon = async () => {
      try {
        const found = await post<{ started: boolean; said: string }>('daemon/start');
        Notification.success(found.said || 'the daemon started', { autoClose: 4000 });
      } catch (e) {
        Notification.error(`mm4watch start: ${describeError(e)}`, { autoClose: false });
      }
      await model.refresh();
    };
    const panel = new RunsPanel(model, {
      openExecuted: run => void openExecuted(run),
      openReport: () => {
        const results = model.status?.results;
        if (results !== null && results !== undefined) {
          void app.commands.execute('docmanager:open', { path: `${results}/index.html` });
        }
      },
      runNow: () => void app.commands.execute(CommandIDs.run),
      startDaemon
    });
    panel.title.icon = ICON;
    app.shell.add(panel, 'right', { rank: 900 });

    app.commands.addCommand(CommandIDs.run, {
      label: 'Run on the Mini…',
      caption: 'Queue a run of this notebook (as saved) on an executor, with parameters',
      icon: ICON,
      isEnabled: () => !!current() && !!model.status && !model.status.config_error,
      execute: async () => {
        const nb = current();
        if (!nb || !model.status) {
          return;
        }
        try {
          const said = await runDialog(nb.context.path, nb, model.status, model.runs?.tag?.executor ?? null);
          if (said) {
            Notification.info(`${nb.context.path}: ${said}`, { autoClose: 5000 });
          }
        } catch (e) {
          Notification.error(`${nb.context.path}: ${(e as Error).message}`, { autoClose: false });
        }
        void model.refresh();
      }
    });
    app.commands.addCommand(CommandIDs.tag, {
      label: 'Tag for remote runs',
      caption: `Add "${TAG}" to the first code cell: each save then runs it on the Mini`,
      isEnabled: () => !!current(),
      execute: () => {
        const cells = current()?.content.model?.cells;
        if (!cells) {
          return;
        }
        for (let i = 0; i < cells.length; i++) {
          const cell = cells.get(i);
          if (cell.type === 'code') {
            const source = cell.sharedModel.getSource();
            if (!/^\s*#\s*mm4:\s*remote\b/m.test(source)) {
              cell.sharedModel.setSource(`${TAG}\n${source}`);
            }
            Notification.info('Tagged: the next save runs it on the Mini', { autoClose: 4000 });
            return;
          }
        }
        Notification.warning('No code cell to tag: add one first', { autoClose: 5000 });
      }
    });
    app.commands.addCommand(CommandIDs.panel, {
      label: 'Show the runs of this notebook',
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.start, {
      label: 'Start the mm4watch daemon',
      isEnabled: () => !!model.status && !model.status.daemon,
      execute: startDaemon
    });
    for (const command of [CommandIDs.run, CommandIDs.tag, CommandIDs.panel, CommandIDs.start]) {
      palette?.addItem({ command, category: 'mm4watch' });
    }

    tracker.widgetAdded.connect((_, nb) => {
      const button = new ToolbarButton({
        icon: ICON,
        tooltip: 'Run on the Mini…',
        onClick: () => void app.commands.execute(CommandIDs.run)
      });
      button.node.dataset.mm4 = 'toolbar-run';
      nb.toolbar.insertAfter('cellType', 'mm4watch-run', button);
    });
    tracker.currentChanged.connect(() => model.setNotebook(current()?.context.path ?? null));
    model.setNotebook(current()?.context.path ?? null);

    model.runEnded.connect((_, run) => {
      const ok = run.status === 'succeeded';
      const text = `${run.notebook}: ${result(run)}` + (!ok && errorText(run) ? ` (${errorText(run)})` : '');
      const actions = [
        { label: 'Show runs', callback: () => app.shell.activateById(panel.id) },
        ...(run.folder ? [{ label: 'Open result', callback: () => void openExecuted(run) }] : [])
      ];
      const bad = FAILED.includes(run.status);
      Notification.emit(text, ok ? 'success' : bad ? 'error' : 'info', { autoClose: bad ? false : 8000, actions });
    });

    if (statusBar) {
      const item = new StatusItem(model, () => app.shell.activateById(panel.id));
      statusBar.registerStatusItem('mm4watch:status', {
        item,
        align: 'left',
        rank: 4,
        isActive: () => true
      });
    }
    model.start();
  }
};

export default plugin;
