/**
 * Policy retrieval (RFC 8461 §3.3): `GET https://mta-sts.<domain>/.well-known/mta-sts.txt`.
 *
 * The fetch is where an attacker can interfere, so it is strict and bounded: the server certificate must be valid
 * for `mta-sts.<domain>` (WebPKI), only status 200 counts, redirects are never followed, HTTP caching headers are
 * ignored (the policy's own `max_age` governs), the body is limited to 64 KiB and the whole exchange to one
 * deadline, so a server that trickles bytes cannot hold a sender.
 */
import type { PeerCertificate } from 'node:tls';
import { Agent, request, type Dispatcher } from 'undici';
import { MtaStsError, errorCodeOf } from '../errors.js';
import { parsePolicy, type PolicyFile } from '../policy/policy-file.js';
import { sharedSecureContext } from '../tls/connect-options.js';
import { isCertificateVerificationError, resultTypeForTlsError } from '../tls/tls-errors.js';

export interface FetchPolicyOptions {
  /** The undici dispatcher to send the request with. */
  dispatcher: Dispatcher;
  /** Overall deadline for connect + headers + body, in ms. */
  timeoutMs: number;
  /** Largest body accepted, in bytes. */
  maxBytes: number;
  /** Reject a Content-Type other than `text/plain` (RFC 8461 §3.2). */
  requireTextPlain: boolean;
  /** FOR TESTS ONLY: the HTTPS port of the policy host (the RFC fixes 443). */
  port?: number;
  signal?: AbortSignal;
}

/** A successfully fetched and parsed policy. */
export interface FetchedPolicy {
  policy: PolicyFile;
  text: string;
  url: string;
  status: number;
  contentType: string | undefined;
  bytes: number;
  elapsedMs: number;
}

/** The policy URL for a (normalised) policy domain (§3.3). */
export function policyUrl(domain: string, port?: number): string {
  return `https://mta-sts.${domain}${port !== undefined && port !== 443 ? `:${port}` : ''}/.well-known/mta-sts.txt`;
}

/** One decoder for every fetch (decoding is stateless for a complete body). */
const UTF8 = new TextDecoder('utf-8');

const CERT_ERROR = /CERT|SELF_SIGNED|UNABLE_TO|ALTNAME|VERIFY|HOSTNAME/;

/**
 * Fetches and parses the policy of `domain`. Rejects only with {@link MtaStsError}.
 */
export async function fetchPolicy(domain: string, options: FetchPolicyOptions): Promise<FetchedPolicy> {
  const url = policyUrl(domain, options.port);
  const started = performance.now();
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, options.timeoutMs);
  timer.unref?.();
  const onAbort = () => controller.abort();
  if (options.signal) {
    if (options.signal.aborted) controller.abort();
    else options.signal.addEventListener('abort', onAbort, { once: true });
  }
  const fail: Fail = (code, message, extra = {}) =>
    new MtaStsError(code, message, { domain, ...extra, details: { url, ...(extra.details ?? {}) } });
  try {
    let response: Dispatcher.ResponseData;
    try {
      response = await request(url, {
        method: 'GET',
        dispatcher: options.dispatcher,
        signal: controller.signal,
        headers: { accept: 'text/plain', 'user-agent': 'mta-sts-sender' },
        // Fetches are max_age apart: a fresh connection (and a fresh certificate check) every time.
        reset: true,
        // undici's request() never follows redirects unless an interceptor is installed: §3.3 "MUST NOT follow".
      });
    } catch (error) {
      throw classifyTransportError(error, timedOut, options, url, domain);
    }
    const { statusCode, body } = response;
    const contentType = checkResponse(response, options, fail);
    let bytes: number;
    let chunks: Buffer[];
    try {
      ({ chunks, bytes } = await readBody(body, options.maxBytes, fail));
    } catch (error) {
      if (error instanceof MtaStsError) throw error;
      throw classifyTransportError(error, timedOut, options, url, domain);
    }
    const text = UTF8.decode(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, bytes));
    let policy: PolicyFile;
    try {
      policy = parsePolicy(text, { maxBytes: options.maxBytes });
    } catch (error) {
      // §3.3: a policy that fails to parse is treated like a failed fetch.
      // `policyText` (bounded) lets TLS reports carry the policy "including any errors" (RFC 8460 §4.4).
      throw new MtaStsError('MTASTS_POLICY_INVALID', (error as Error).message, { domain, cause: error, details: { url, status: statusCode, contentType, bytes, policyText: text.slice(0, 8192) } });
    }
    return { policy, text, url, status: statusCode, contentType, bytes, elapsedMs: Math.round(performance.now() - started) };
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  }
}

type Fail = (code: ConstructorParameters<typeof MtaStsError>[0], message: string, extra?: { details?: Record<string, string | number | boolean | undefined> }) => MtaStsError;

/** §3.3: only a 200 answer (no redirect) with, when required, `text/plain` (§3.2) and a declared size within the limit. */
function checkResponse(response: Dispatcher.ResponseData, options: FetchPolicyOptions, fail: Fail): string | undefined {
  const { statusCode, headers, body } = response;
  const contentTypeHeader = headers['content-type'];
  const contentType = Array.isArray(contentTypeHeader) ? contentTypeHeader[0] : contentTypeHeader;
  if (statusCode >= 300 && statusCode < 400) {
    discard(body);
    const location = headers.location;
    throw fail('MTASTS_HTTP_REDIRECT', `policy host answered ${statusCode} redirect; redirects are not followed (RFC 8461 §3.3)`, { details: { status: statusCode, location: Array.isArray(location) ? location[0] : location } });
  }
  if (statusCode !== 200) {
    discard(body);
    throw fail('MTASTS_HTTP_STATUS', `policy host answered HTTP ${statusCode}; only 200 is success (RFC 8461 §3.3)`, { details: { status: statusCode } });
  }
  if (options.requireTextPlain && !isTextPlain(contentType)) {
    discard(body);
    throw fail('MTASTS_CONTENT_TYPE', `policy served as ${contentType ?? '(no content type)'}; text/plain is required (RFC 8461 §3.2)`, { details: { contentType } });
  }
  const declared = Number(headers['content-length']);
  if (Number.isFinite(declared) && declared > options.maxBytes) {
    discard(body);
    throw fail('MTASTS_BODY_TOO_LARGE', `policy of ${declared} bytes exceeds the limit of ${options.maxBytes} bytes`, { details: { bytes: declared, limit: options.maxBytes } });
  }
  return contentType;
}

/** Reads the body, stopping as soon as it exceeds `maxBytes` (§3.3: a server must not feed us without bound). */
async function readBody(body: Dispatcher.ResponseData['body'], maxBytes: number, fail: Fail): Promise<{ chunks: Buffer[]; bytes: number }> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    bytes += buf.length;
    if (bytes > maxBytes) {
      discard(body);
      throw fail('MTASTS_BODY_TOO_LARGE', `policy body exceeds the limit of ${maxBytes} bytes (RFC 8461 §3.3)`, { details: { limit: maxBytes } });
    }
    chunks.push(buf);
  }
  return { chunks, bytes };
}

/** Stops reading a body we will not use; the abort error it emits is expected and swallowed. */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => {});
  body.destroy();
}

function isTextPlain(contentType: string | undefined): boolean {
  if (!contentType) return false;
  const semi = contentType.indexOf(';');
  const type = (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
  return type === 'text/plain';
}

function classifyTransportError(error: unknown, timedOut: boolean, options: FetchPolicyOptions, url: string, domain: string): MtaStsError {
  if (error instanceof MtaStsError) return error;
  if (timedOut) return new MtaStsError('MTASTS_FETCH_TIMEOUT', `policy fetch did not complete within ${options.timeoutMs} ms`, { domain, cause: error, details: { url, timeoutMs: options.timeoutMs } });
  if (options.signal?.aborted) return new MtaStsError('MTASTS_ABORTED', 'policy fetch aborted by the caller', { domain, cause: error, details: { url } });
  const code = errorCodeOf(error);
  if (code !== undefined && (CERT_ERROR.test(code) || isCertificateVerificationError(code))) {
    // §3.3: the policy host's certificate must validate; an attacker's certificate is "sts-webpki-invalid".
    return new MtaStsError('MTASTS_WEBPKI_INVALID', `certificate of mta-sts.${domain} did not validate: ${code} (${resultTypeForTlsError(error)})`, { domain, cause: error, details: { url, tlsCode: code } });
  }
  const reason = code ?? (error instanceof Error ? error.message : String(error));
  return new MtaStsError('MTASTS_FETCH_FAILED', `policy fetch from ${url} failed: ${reason}`, { domain, cause: error, details: { url, reason } });
}


export interface PolicyAgentOptions {
  ca: (string | Buffer)[] | undefined;
  lookup: (...args: never[]) => void;
  /** The name check; an exact subjectAltName match ({@link sanListsHostExactly}) is accepted without calling it. */
  checkServerIdentity: (host: string, cert: PeerCertificate) => Error | undefined;
  connectTimeoutMs: number;
}

/**
 * True when the certificate's subjectAltName lists `host` itself as a DNS name: an exact DNS-ID match (RFC 6125
 * §6.4.1), which every stricter check accepts too. Node has already parsed the extension into `subjectaltname`
 * (entries `DNS:<name>`, joined by `, `; a name with unusual characters is quoted, so it never splits into a
 * false match), so this costs a string scan instead of parsing the certificate again.
 */
export function sanListsHostExactly(host: string, cert: PeerCertificate): boolean {
  const san = cert?.subjectaltname;
  if (typeof san !== 'string' || typeof host !== 'string' || host.length === 0) return false;
  const wanted = `dns:${host.toLowerCase()}`;
  const names = san.toLowerCase();
  for (let start = 0; start < names.length; ) {
    let end = names.indexOf(', ', start);
    if (end === -1) end = names.length;
    if (end - start === wanted.length && names.startsWith(wanted, start)) return true;
    start = end + 2;
  }
  return false;
}

/** The default dispatcher for policy fetches: an undici Agent that resolves through the library's resolver. */
export function createPolicyAgent(options: PolicyAgentOptions): Agent {
  const check = options.checkServerIdentity;
  return new Agent({
    connect: {
      // Shared with MX sessions using the same roots: building one from ~140 roots per handshake costs milliseconds.
      secureContext: sharedSecureContext(options.ca, 'TLSv1.2'),
      lookup: options.lookup as never,
      // §3.3: the certificate must be valid for mta-sts.<domain>. OpenSSL has validated the chain by now; an exact
      // subjectAltName entry settles the name at once, anything else (wildcards) goes to the full check.
      checkServerIdentity: (host: string, cert: PeerCertificate) => (sanListsHostExactly(host, cert) ? undefined : check(host, cert)),
      timeout: options.connectTimeoutMs,
    },
    // Policies are fetched rarely (cached for max_age); do not hold idle sockets open.
    keepAliveTimeout: 1_000,
    keepAliveMaxTimeout: 5_000,
    connections: 64,
  });
}
