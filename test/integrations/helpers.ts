/** Shared helpers of the integration tests: a recording TLS-RPT recorder and engine/transport options for a world. */
import { createMtaSts, type MtaSts } from '../../src/engine.js';
import type { SessionOutcome, TlsRptRecorder } from '../../src/tlsrpt/types.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import type { MtaStsDeliveryError, MtaStsTransportOptions } from '../../src/integrations/nodemailer/index.js';

/** A recorder that keeps every outcome. */
export class MemoryRecorder implements TlsRptRecorder {
  readonly outcomes: SessionOutcome[] = [];
  record(outcome: SessionOutcome): void {
    this.outcomes.push(outcome);
  }
  /** Outcomes of one policy domain. */
  of(domain: string): SessionOutcome[] {
    return this.outcomes.filter((o) => o.policy.domain === domain);
  }
}

/** Short timeouts so refused or dead hosts fail fast. */
/** Nodemailer's own timeout options (for `nodemailer.createTransport`, e.g. a guarded transport). */
export const FAST = { connectionTimeout: 2000, greetingTimeout: 2000, socketTimeout: 5000 } as const;
/** The same timeouts, as the direct transport names them (with their unit). */
export const FAST_MS = { connectionTimeoutMs: 2000, greetingTimeoutMs: 2000, socketTimeoutMs: 5000 } as const;

/** Engine options pointed at the world, with short deadlines. */
export function engineOptions(world: TestWorld) {
  return { ...world.mtaStsOptions(), fetchTimeoutMs: 3000, dnsTimeoutMs: 2000 };
}

/** Options of the direct transport pointed at the world. */
export function transportOptions(world: TestWorld, extra: Partial<MtaStsTransportOptions> = {}): MtaStsTransportOptions {
  // With a shared engine (or hooks) the engine options belong to that engine: given here they would be refused.
  const engine = extra.mtaSts !== undefined || extra.hooks !== undefined ? {} : { ...world.mtaStsOptions(), fetchTimeoutMs: 3000 };
  return { ...engine, dnsTimeoutMs: 2000, smtpPort: world.smtpPort, name: 'sender.example', ...FAST_MS, ...extra };
}

/** Messages the world's MX hosts received for a recipient domain. */
export function receivedFor(world: TestWorld, domain: string) {
  return world.messages.filter((m) => m.recipients.some((r) => r.toLowerCase().endsWith(`@${domain}`)));
}

/** A message for `to`. */
export function mail(to: string | string[], subject = 'test') {
  return { from: 'sender@sender.example', to, subject, text: `hello ${subject}` };
}

/** A world and one engine pointed at it (policy cache and trust roots shared by a file's tests). */
export async function startWorld(): Promise<{ world: TestWorld; engine: MtaSts }> {
  const world = await createTestWorld();
  return { world, engine: createMtaSts(engineOptions(world)) };
}

/** Tears down what {@link startWorld} started (tolerates a failed start). */
export async function stopWorld(world: TestWorld | undefined, engine: MtaSts | undefined): Promise<void> {
  await engine?.close();
  await world?.close();
}

/** The error a send rejects with; fails the test when the send succeeds. */
export async function sendError(send: () => Promise<unknown>): Promise<MtaStsDeliveryError> {
  try {
    await send();
  } catch (error) {
    return error as MtaStsDeliveryError;
  }
  throw new Error('expected the send to fail');
}
