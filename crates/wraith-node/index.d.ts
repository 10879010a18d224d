import { Duplex } from 'node:stream'
import { EventEmitter } from 'node:events'

/** A key as a file path or the file's contents (OpenSSH format). */
export type KeySource = string | Buffer

/** How to reach the server: plain TCP, SSH inside TLS, or iroh (QUIC, peer to peer). */
export type TransportName = 'tcp' | 'tls' | 'ws' | 'wss' | 'iroh'

export interface ConnectOptions {
  /** `host[:port]` of the server (port 22, or 443 with tls, if omitted). Not with
   * `transport: 'iroh'` (give `peer`). Or several servers, tried in order until one
   * works, each `host[:port]` or with its own transport: `tcp://`, `tls://`,
   * `ws://host[:port][/path]`, `wss://…` or `iroh:<ticket>` (as `wraith connect
   * --server a --server b`). */
  server?: string | string[]
  /** iroh: the server's ticket (`server.ticket`), or its endpoint id. */
  peer?: string
  /** Private key (OpenSSH): a path or its contents. */
  identity: KeySource
  /** OpenSSH user certificate for `identity`: a path or its contents.
   * Default: `<identity>-cert.pub` when `identity` is a path and it exists. */
  certificate?: KeySource
  /** Passphrase of an encrypted `identity` (the CLI reads `WRAITH_KEY_PASSPHRASE`). */
  passphrase?: string
  /** Pinned host key: `SHA256:…`, a public key line, or a `.pub` path.
   * Without it and `knownHosts`: trust on first use (`wraith connect`'s
   * known-hosts file). */
  hostKey?: string
  /** An OpenSSH known_hosts file the server's key must be listed in (like
   * `wraith connect --known-hosts`); a key it does not list is refused. */
  knownHosts?: string
  /** Login name; default `$USER`, else the user running node. */
  user?: string
  /** `host:port` reached from the server; default `wraith-control:0`. */
  target?: string
  /** Default `tcp`. */
  transport?: TransportName
  /** ws, wss: the path of the WebSocket upgrade; default `/`. Keep it secret to make it a password for the port. */
  wsPath?: string
  /** ws, wss: the Host header when it is not the server's name (CDNs, virtual hosts). */
  wsHost?: string
  /** tls, wss: SNI and the name the certificate must match; default the server host. */
  tlsServerName?: string
  /** tls: trust only these CA certificates (PEM): a path or its contents. */
  tlsCa?: KeySource
  /** tls: accept only a certificate with this key: `sha256/<base64 of the SPKI hash>`. */
  tlsPin?: string
  /** tls: do not check the certificate at all (the SSH host key still is). */
  insecure?: boolean
  /** iroh: a relay URL, `default` (n0's public relays) or `disabled` (direct addresses only). */
  irohRelay?: string
  /** Reach the server through `socks5://[user:pass@]host:port` or `http://…` (CONNECT). */
  proxy?: string
  /** Seconds for dial, handshake and authentication; default 15. */
  connectTimeout?: number
}

export interface ServeOptions {
  /** SSH host key (OpenSSH Ed25519): a path or its contents. */
  hostKey: KeySource
  /** Keys allowed to log in (authorized_keys format): a path or its contents. */
  authorizedKeys: KeySource
  /** Trust user certificates signed by these CA keys: a path or contents, or a list. */
  certAuthority?: KeySource | KeySource[]
  /** Passphrase of an encrypted `hostKey` (the CLI reads `WRAITH_KEY_PASSPHRASE`). */
  passphrase?: string
  /** Default `127.0.0.1:0`. */
  listen?: string
  /** Default `tcp`. */
  transport?: TransportName
  /** ws, wss: only a WebSocket upgrade on this path reaches SSH; every other request gets nginx's 404. Default `/`. */
  wsPath?: string
  /** tls: certificate chain (PEM, leaf first): a path or its contents. */
  tlsCert?: KeySource
  /** tls: private key (PEM): a path or its contents. */
  tlsKey?: KeySource
  /** tls: answer anything that is not SSH like a stock nginx (404). */
  stealth?: boolean
  /** tls + stealth: relay non-SSH clients to this `host:port` instead. */
  stealthFallback?: string
  /** tls + stealth: seconds for the handshake and first request; default 60. */
  stealthTimeout?: number
  /** tls: get the certificate from an ACME CA for these names (TLS-ALPN-01). */
  acmeDomain?: string | string[]
  /** tls: get the certificate from an ACME CA for these IP addresses. */
  acmeIp?: string | string[]
  /** ACME account contact e-mail. */
  acmeEmail?: string
  /** ACME account and certificate cache directory; default `<data dir>/wraith/acme`. */
  acmeCache?: string
  /** ACME directory URL; default Let's Encrypt production. */
  acmeDirectory?: string
  /** PEM file of a CA to trust for the ACME server's own HTTPS (e.g. pebble). */
  acmeCaRoot?: string
  /** iroh: a relay URL, `default` (n0's public relays) or `disabled` (direct addresses only). */
  irohRelay?: string
  /** Outbound proxy for tunnel targets (server side, like `wraith serve --proxy`). */
  proxy?: string
  /**
   * Let every key that may forward open a control channel (like `wraith serve
   * --hub-for-all-keys`). Default false, as in the CLI: only keys and CAs with
   * the `hub` option get one.
   */
  hubForAllKeys?: boolean
  /**
   * Share the event hub with every server on this NATS broker (like `wraith
   * serve --hub`): `nats://[user:password@|token@]host[:port]`, `tls://…` for
   * TLS, comma-separated for a cluster. Events cross servers at most once;
   * local delivery never waits for the broker.
   */
  hub?: string
  /** Subject prefix on the broker (events travel on `<prefix>.events`); default `wraith`. */
  hubPrefix?: string
  /** A NATS `.creds` file (JWT and NKey seed) for the broker. */
  hubCreds?: string
  /** A CA (PEM file) that signed the broker's certificate; implies TLS. */
  hubCa?: string
}

/** A Duplex over one SSH channel; `end()` sends EOF. */
export declare class WraithStream extends Duplex {}

export interface ConnectionInfo {
  /** `ip:port` of the client, when the transport has one. */
  remoteAddress: string | null
  /** iroh: the client's endpoint id. */
  endpointId: string | null
  /** `tcp`, `tls` or `iroh`. */
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
  /** The bound address, `ip:port` (iroh: a description of the endpoint). */
  readonly address: string
  /** iroh: this server's endpoint id; `null` for other transports. */
  readonly endpointId: string | null
  /** iroh: the ticket to pass as `peer`; `null` for other transports. */
  readonly ticket: string | null
  /** One line per skipped line of `authorizedKeys` / `certAuthority` (file,
   * line number, why), and one if nobody can log in: what `wraith serve`
   * logs at startup. */
  readonly warnings: string[]
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
