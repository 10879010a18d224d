import { Duplex } from 'node:stream'
import { EventEmitter } from 'node:events'

/** A key as a file path or the file's contents (OpenSSH format). */
export type KeySource = string | Buffer

export interface ConnectOptions {
  /** `host[:port]` of the server (port 22 if omitted). */
  server: string
  /** Private key: a path or its contents. */
  identity: KeySource
  /** Pinned host key: `SHA256:…`, a public key line, or a `.pub` path. */
  hostKey?: string
  /** Login name; default `$USER`. */
  user?: string
  /** `host:port` reached from the server; default `wraith-control:0`. */
  target?: string
  /** `tcp` (the only transport of this build of the package). */
  transport?: 'tcp'
  /** Seconds for dial, handshake and authentication; default 15. */
  connectTimeout?: number
}

export interface ServeOptions {
  hostKey: KeySource
  authorizedKeys: KeySource
  /** Default `127.0.0.1:0`. */
  listen?: string
  transport?: 'tcp'
}

/** A Duplex over one SSH channel; `end()` sends EOF. */
export declare class WraithStream extends Duplex {}

export interface ConnectionInfo {
  /** `ip:port` of the client, when the transport has one. */
  remoteAddress: string | null
  /** `tcp` (more with other transports). */
  transport: string
  /** `SHA256:…` of the key the client authenticated with. */
  keyFingerprint: string
}

/** Control channels join the event hub, unless a `'connection'` listener
 * is added: from then on each is emitted as a Duplex instead. */
export declare class WraithServer extends EventEmitter {
  on(event: 'connection', listener: (stream: WraithStream, info: ConnectionInfo) => void): this
  on(event: 'close', listener: () => void): this
  on(event: 'error', listener: (err: Error) => void): this
  /** The bound address, `ip:port`. */
  readonly address: string
  /** Stop accepting and disconnect sessions gracefully. */
  close(): Promise<void>
}

/** One SSH session and one channel to `options.target`. Rejects with the
 * same message as `wraith connect` (auth failure, host-key mismatch,
 * refused target, unreachable server). */
export declare function connect(options: ConnectOptions): Promise<WraithStream>

/** Run a wraith server in this process. */
export declare function serve(options: ServeOptions): Promise<WraithServer>

/** A fresh Ed25519 key pair in OpenSSH format. */
export declare function generateKey(comment?: string): { privateKey: string, publicKey: string }

/** Frame an envelope: 4-byte big-endian length + JSON. */
export declare function encodeFrame(type: string, id: string, payload?: unknown): Buffer

/** An event received through the hub. */
export declare class WraithEvent<T = unknown> extends Event {
  constructor(type: string, init?: { id?: string, payload?: T })
  readonly id: string
  readonly payload: T
  /** Same as `payload`, as on a CustomEvent. */
  readonly detail: T
}

/** Maps event type names to payload types, for typed listeners. */
export type EventMap = Record<string, unknown>

export declare class WraithEventTarget<M = EventMap> extends EventTarget {
  /** Subscribes to `type` at the hub (the first listener of a type). */
  addEventListener<K extends keyof M & string>(
    type: K,
    listener: ((event: WraithEvent<M[K]>) => void) | { handleEvent(event: WraithEvent<M[K]>): void } | null,
    options?: AddEventListenerOptions | boolean
  ): void
  /** Unsubscribes when the last listener of `type` goes. */
  removeEventListener<K extends keyof M & string>(
    type: K,
    listener: ((event: WraithEvent<M[K]>) => void) | { handleEvent(event: WraithEvent<M[K]>): void } | null,
    options?: EventListenerOptions | boolean
  ): void
  /** Publishes to the hub: other subscribers of `event.type` receive it. */
  dispatchEvent(event: WraithEvent<M[keyof M]> | Event): boolean
  /** Resolves once every subscription change asked for so far is in force. */
  ready(): Promise<void>
  /** Ends the stream. */
  close(): void
}

export declare function createWraithEventTarget<M = EventMap>(
  options: { stream: Duplex }
): WraithEventTarget<M>
