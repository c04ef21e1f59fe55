// Where the renderer's user actions go. In VS Code the renderer context can post messages to
// the extension (open an image, save a selection through a save dialog, insert a cell); in the
// standalone HTML report there is no extension, so the same actions fall back to what a plain
// page can do (a download, the clipboard).
import type { FromRenderer } from '../../extension/protocol';

type Post = (msg: FromRenderer) => void;
let post: Post | undefined;

export function setMessageTarget(target: Post | undefined): void {
  post = target;
}

export function canMessage(): boolean {
  return post !== undefined;
}

function download(name: string, content: string, type: string): void {
  const url = URL.createObjectURL(new Blob([content], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** Sends a user action to the extension, or does the page-only equivalent. */
export function act(msg: FromRenderer): void {
  if (post) {
    post(msg);
    return;
  }
  switch (msg.type) {
    case 'saveSelection':
      download(msg.suggestedName, msg.content, msg.format === 'csv' ? 'text/csv' : 'text/plain');
      break;
    case 'insertCell':
      void navigator.clipboard?.writeText(msg.text).catch(() => undefined);
      break;
    case 'openImage':
      // A page cannot open editor tabs; the hover thumbnail already shows the image.
      break;
  }
}
