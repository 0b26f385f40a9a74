/**
 * MTA-STS policy hosts: how `https://mta-sts.<domain>/.well-known/mta-sts.txt` answers in the test world.
 *
 * Besides serving a policy, a policy host can misbehave in each way RFC 8461 §3.3 asks senders to survive: error
 * statuses, redirects (which must not be followed), a wrong media type, an oversized body, a body that trickles in
 * or never comes, and a broken certificate. Slow behaviours are bounded in time so a forgotten connection ends by
 * itself, and they stop at once when the world closes (its sockets are destroyed).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CertVariant } from './ca.js';

/** The MTA-STS policy path (RFC 8461 §3.2). */
export const POLICY_PATH = '/.well-known/mta-sts.txt';

/** Where a `redirect` points by default. It serves the policy, so a client that wrongly follows redirects succeeds and the request log shows it. */
export const REDIRECT_TARGET_PATH = '/redirect-target/.well-known/mta-sts.txt';

/**
 * How a policy host answers `GET /.well-known/mta-sts.txt`:
 * - `ok`: 200 with the policy, `text/plain` unless `contentType` says otherwise.
 * - `status`: that status (e.g. 404, 500) with a short text body.
 * - `redirect`: a 3xx (default 301) to `location` (default: {@link REDIRECT_TARGET_PATH} on the same host and port).
 * - `wrong-content-type`: 200 with the policy as `text/html`.
 * - `oversize`: 200 `text/plain` with `bytes` bytes (default 100 KiB, over the 64 KiB limit senders apply), sent
 *   chunked, or with a Content-Length header when `contentLength` is true.
 * - `trickle`: 200 headers at once, then the policy one byte every `intervalMs` (default 1000); the connection is
 *   cut after `maxMs` (default 60 s) if the body is not complete by then.
 * - `hang`: reads the request and never answers; the connection is cut after `maxMs` (default 60 s).
 * - `cert`: serves the policy normally, with a certificate of the given variant.
 */
export type PolicyHostBehaviour =
  | { kind: 'ok'; contentType?: string }
  | { kind: 'status'; status: number }
  | { kind: 'redirect'; location?: string; status?: number }
  | { kind: 'wrong-content-type' }
  | { kind: 'oversize'; bytes?: number; contentLength?: boolean }
  | { kind: 'trickle'; intervalMs?: number; maxMs?: number }
  | { kind: 'hang'; maxMs?: number }
  | { kind: 'cert'; cert: CertVariant };

/** The fields of a policy file. */
export interface PolicyFields {
  mode: 'enforce' | 'testing' | 'none';
  mx: readonly string[];
  /** Seconds. Default 86400. */
  maxAge?: number;
}

/** The policy file text for `fields` (RFC 8461 §3.2), lines ending in CRLF. */
export function formatPolicy(fields: PolicyFields): string {
  const lines = ['version: STSv1', `mode: ${fields.mode}`, ...fields.mx.map((mx) => `mx: ${mx}`), `max_age: ${fields.maxAge ?? 86_400}`];
  return lines.map((line) => `${line}\r\n`).join('');
}

/** The certificate variant a behaviour presents. */
export function behaviourCert(behaviour: PolicyHostBehaviour): CertVariant {
  return behaviour.kind === 'cert' ? behaviour.cert : 'valid';
}

const DEFAULT_OVERSIZE_BYTES = 100 * 1024;
const DEFAULT_TRICKLE_INTERVAL_MS = 1000;
const DEFAULT_SLOW_LIMIT_MS = 60_000;
const OVERSIZE_CHUNK = 16 * 1024;

/** Answers one request to a policy host whose current policy text and behaviour are `state`. */
export function answerPolicyRequest(req: IncomingMessage, res: ServerResponse, state: { body: string; behaviour: PolicyHostBehaviour; port: number }): void {
  const path = (req.url ?? '/').replace(/\?.*$/, '');
  if (req.method !== 'GET') {
    res.writeHead(405, { allow: 'GET', 'content-type': 'text/plain' }).end('method not allowed\n');
    return;
  }
  if (path === REDIRECT_TARGET_PATH) {
    res.writeHead(200, { 'content-type': 'text/plain' }).end(state.body);
    return;
  }
  if (path !== POLICY_PATH) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    return;
  }
  const { behaviour, body } = state;
  switch (behaviour.kind) {
    case 'ok':
      res.writeHead(200, { 'content-type': behaviour.contentType ?? 'text/plain' }).end(body);
      return;
    case 'cert':
      res.writeHead(200, { 'content-type': 'text/plain' }).end(body);
      return;
    case 'wrong-content-type':
      res.writeHead(200, { 'content-type': 'text/html' }).end(body);
      return;
    case 'status':
      res.writeHead(behaviour.status, { 'content-type': 'text/plain' }).end(`status ${behaviour.status}\n`);
      return;
    case 'redirect': {
      const host = (req.headers.host ?? '').replace(/:\d+$/, '');
      const location = behaviour.location ?? `https://${host}:${state.port}${REDIRECT_TARGET_PATH}`;
      res.writeHead(behaviour.status ?? 301, { location, 'content-type': 'text/plain' }).end(`moved to ${location}\n`);
      return;
    }
    case 'oversize': {
      const total = behaviour.bytes ?? DEFAULT_OVERSIZE_BYTES;
      const padded = Buffer.alloc(total, '#');
      Buffer.from(body).copy(padded, 0, 0, Math.min(total, Buffer.byteLength(body)));
      res.writeHead(200, { 'content-type': 'text/plain', ...(behaviour.contentLength ? { 'content-length': total } : {}) });
      for (let offset = 0; offset < total; offset += OVERSIZE_CHUNK) res.write(padded.subarray(offset, offset + OVERSIZE_CHUNK));
      res.end();
      return;
    }
    case 'trickle': {
      const bytes = Buffer.from(body);
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': bytes.length });
      res.flushHeaders();
      let sent = 0;
      const tick = setInterval(() => {
        res.write(bytes.subarray(sent, sent + 1));
        sent++;
        if (sent >= bytes.length) {
          clearInterval(tick);
          res.end();
        }
      }, behaviour.intervalMs ?? DEFAULT_TRICKLE_INTERVAL_MS);
      tick.unref();
      cutAfter(res, behaviour.maxMs ?? DEFAULT_SLOW_LIMIT_MS, () => clearInterval(tick));
      return;
    }
    case 'hang':
      cutAfter(res, behaviour.maxMs ?? DEFAULT_SLOW_LIMIT_MS);
      return;
  }
}

/** Destroys the connection after `ms` unless the response finished first; timers never keep the process alive. */
function cutAfter(res: ServerResponse, ms: number, cleanup?: () => void): void {
  const timer = setTimeout(() => res.destroy(), ms);
  timer.unref();
  res.once('close', () => {
    clearTimeout(timer);
    cleanup?.();
  });
}
