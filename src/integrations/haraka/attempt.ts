/**
 * One delivery attempt of one Haraka message (`HMailItem`) under MTA-STS (RFC 8461 §4, §5).
 *
 * `get_mx` runs on every attempt (retries included) and installs, as own properties of that one hmail, the
 * overrides this attempt needs; nothing process-wide changes, and a later attempt re-decides (a policy that is no
 * longer `enforce` removes them). Under `enforce`:
 *
 * - `get_force_tls()` is true: Haraka requires STARTTLS and sends only EHLO/STARTTLS before TLS;
 * - each connection is wrapped (see {@link MxConnection}): strict TLS options, TLS-RPT, a write guard;
 * - `temp_fail` / `bounce` coming from a connection that never reached a validated TLS session (no STARTTLS, a 5xx
 *   to STARTTLS or EHLO, a failed certificate check) are turned into "try the next MX host". Haraka would defer the
 *   whole message without trying the other MX hosts, or bounce it; RFC 8461 §4.2 says only that this MX may not be
 *   used, and §5.1 that a policy failure is never a bounce. When no MX host is left Haraka's own
 *   `temp_fail('Tried all MXs')` defers the message (retried later, when the policy is looked up again).
 *
 * Under `testing`, and without a policy when a TLS-RPT recorder is configured, connections are only observed.
 */
import { buildPlan, type DeliveryPlan, type MxCandidate } from '../../plan/plan.js';
import { missingSocketInternals, override, prototypeMethod, removeOverrides, type HarakaHmail, type HarakaMx, type HarakaSocket } from './internals.js';
import { MxConnection, type Attempt } from './session.js';

export type { Attempt, AttemptContext } from './session.js';

const ATTEMPT = Symbol.for('mta-sts-sender.haraka.attempt');

/** The attempt installed on an hmail, if any. */
export function attemptOf(hmail: HarakaHmail): Attempt | undefined {
  return hmail[ATTEMPT] as Attempt | undefined;
}

/**
 * Installs an attempt on an hmail: `enforce` overrides, observation only (`observe`), or nothing (removes what an
 * earlier attempt installed).
 */
export function installAttempt(hmail: HarakaHmail, attempt: Attempt | undefined, observe: boolean): void {
  Object.defineProperty(hmail, ATTEMPT, { value: attempt, configurable: true, writable: true, enumerable: false });
  if (!attempt || (!attempt.enforce && !observe)) {
    removeOverrides(hmail);
    return;
  }
  override(hmail, 'try_deliver_host_on_socket', function (this: HarakaHmail, mx, host, port, socket) {
    return connect(this, attempt, mx, host, port, socket);
  });
  if (!attempt.enforce) {
    removeOverrides(hmail, ['try_deliver_host_on_socket']);
    return;
  }
  // RFC 8461 §4.2: STARTTLS required for this message only (Haraka's force_tls_hosts is process-wide).
  override(hmail, 'get_force_tls', () => true);
  override(hmail, 'try_deliver', function (this: HarakaHmail) {
    if (attempt.current) attempt.current.ended = true;
    return prototypeMethod(this, 'try_deliver')!.call(this);
  });
  override(hmail, 'temp_fail', function (this: HarakaHmail, err, extra) {
    if (skipMx(this, attempt, `Haraka would defer the message: ${String(err)}`)) return undefined;
    if (/Tried all MXs/.test(String(err))) attempt.ctx.log('warn', triedAllMessage(attempt), attempt.uuid);
    return prototypeMethod(this, 'temp_fail')!.call(this, err, extra);
  });
  override(hmail, 'bounce', function (this: HarakaHmail, err, opts) {
    if (skipMx(this, attempt, `Haraka would bounce the message: ${String(err)}`)) return undefined;
    return prototypeMethod(this, 'bounce')!.call(this, err, opts);
  });
}

/**
 * Why Haraka ran out of MX hosts. When it never opened a connection, Haraka itself dropped every MX host the policy
 * allowed (an address on this machine with `local_mx_ok=false`, or an address lookup that failed): saying "no MX
 * passed the policy checks" would blame the policy for Haraka's own filter.
 */
function triedAllMessage(attempt: Attempt): string {
  const prefix = `mta-sts: domain=${attempt.domain} mode=enforce action=defer:`;
  if (attempt.current === undefined) {
    const hosts = attempt.plan.candidates.filter((c) => c.allowed).map((c) => c.host);
    return `${prefix} Haraka connected to none of the MX hosts the policy allows (${hosts.join(', ') || 'none'}): it skips an MX whose address is on this machine unless outbound.ini has local_mx_ok=true, and an MX whose address lookup failed; deferring, never bouncing (RFC 8461 §5.1)`;
  }
  return `${prefix} no MX host passed the policy checks; deferring, never bouncing (RFC 8461 §5.1)`;
}

/**
 * A deferral or bounce decided on a connection that never reached a validated TLS session says nothing trustworthy
 * about the message (RFC 8461 §4.2: that MX is just not usable): try the next MX host instead. True when handled.
 */
function skipMx(hmail: HarakaHmail, attempt: Attempt, why: string): boolean {
  const conn = attempt.current;
  if (!conn || conn.ended || conn.validated) return false;
  conn.ended = true;
  if (!conn.recorded) {
    conn.record({ success: false, resultType: 'starttls-not-supported' }, `${why} (last command ${conn.lastCommand ?? 'none'})`);
  }
  attempt.ctx.log('warn', `mta-sts: domain=${attempt.domain} mode=enforce mx=${conn.host} action=skip: ${why}; trying the next MX host (RFC 8461 §4.2, §5.1)`, attempt.uuid);
  hmail.try_deliver();
  return true;
}

function connect(hmail: HarakaHmail, attempt: Attempt, mx: HarakaMx, host: string, port: number, socket: HarakaSocket): unknown {
  const original = prototypeMethod(hmail, 'try_deliver_host_on_socket')!;
  const missing = missingSocketInternals(socket);
  if (missing.length > 0) {
    if (!attempt.enforce) return original.call(hmail, mx, host, port, socket);
    // Fail closed: without these the session cannot be guarded (another Haraka major?).
    attempt.ctx.log('crit', `mta-sts: domain=${attempt.domain} mode=enforce action=defer: Haraka socket internals missing (${missing.join(', ')}); cannot enforce MTA-STS, deferring`, attempt.uuid);
    try {
      socket.destroy?.();
    } catch {
      // ignore
    }
    if (attempt.current) attempt.current.ended = true;
    return prototypeMethod(hmail, 'temp_fail')!.call(hmail, 'MTA-STS: Haraka internals missing; cannot enforce the policy');
  }
  const { candidate, plan } = candidateFor(attempt, mx);
  const conn = new MxConnection(attempt, mx, socket, candidate, plan);
  attempt.current = conn;
  conn.wrapSocket();
  return original.call(hmail, mx, host, port, socket);
}

/** The plan's candidate for the MX Haraka connects to (a one-host plan when Haraka's own DNS found another name). */
function candidateFor(attempt: Attempt, mx: HarakaMx): { candidate: MxCandidate; plan: DeliveryPlan } {
  const host = String(mx.from_dns ?? mx.exchange).toLowerCase().replace(/\.$/, '');
  const found = attempt.plan.candidates.find((c) => c.host === host);
  if (found) return { candidate: found, plan: attempt.plan };
  const plan = buildPlan({ domain: attempt.plan.domain, lookup: attempt.plan.lookup, mx: [{ host, priority: typeof mx.priority === 'number' ? mx.priority : 0 }], ca: undefined });
  return { candidate: plan.candidates[0]!, plan };
}
