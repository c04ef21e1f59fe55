// The parts of VS Code's notebook renderer API this renderer uses (the full typings live in
// the vscode-notebook-renderer package; these few lines avoid a dependency for them).
export interface OutputItem {
  readonly id: string;
  readonly mime: string;
  readonly metadata: unknown;
  data(): Uint8Array;
  text(): string;
}

export interface RendererContext {
  readonly workspace: { readonly isTrusted: boolean };
  /** Present when the renderer declares `requiresMessaging` other than "never". */
  postMessage?(message: unknown): void;
}

export interface RendererApi {
  renderOutputItem(item: OutputItem, element: HTMLElement, signal: AbortSignal): void | Promise<void>;
  disposeOutputItem?(id?: string): void;
}

export type ActivationFunction = (context: RendererContext) => RendererApi;
