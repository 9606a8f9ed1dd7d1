/** The status bar item: what mm4watch knows of the open notebook, in one line; a click opens the panel. */
import { Widget } from '@lumino/widgets';

import { statusItem } from './describe';
import { Mm4Model } from './model';

export class StatusItem extends Widget {
  constructor(
    private readonly model: Mm4Model,
    onClick: () => void
  ) {
    super();
    this.addClass('mm4-StatusItem');
    this.node.setAttribute('data-mm4', 'status');
    this.node.onclick = onClick;
    model.changed.connect(this.render, this);
    this._tick = window.setInterval(() => {
      if (this.model.entries().running) {
        this.render(); // the running time moves between looks
      }
    }, 1000);
    this.render();
  }

  render(): void {
    const said = statusItem(this.model);
    if (this.node.textContent !== said.text) {
      this.node.textContent = said.text;
      this.node.dataset.changedAt = String(performance.now());
    }
    this.node.title = said.title;
    this.node.dataset.tone = said.tone;
  }

  dispose(): void {
    window.clearInterval(this._tick);
    this.model.changed.disconnect(this.render, this);
    super.dispose();
  }

  private _tick: number;
}
