/** Shared helpers of the integration tests: a recording TLS-RPT recorder and engine/transport options for a world. */
import type { SessionOutcome, TlsRptRecorder } from '../../src/tlsrpt/types.js';
import type { TestWorld } from '../../src/testing/index.js';
import type { MtaStsTransportOptions } from '../../src/integrations/nodemailer/index.js';

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
export const FAST = { connectionTimeout: 2000, greetingTimeout: 2000, socketTimeout: 5000 } as const;

/** Engine options pointed at the world, with short deadlines. */
export function engineOptions(world: TestWorld) {
  return { ...world.mtaStsOptions(), fetchTimeoutMs: 3000, dnsTimeoutMs: 2000 };
}

/** Options of the direct transport pointed at the world. */
export function transportOptions(world: TestWorld, extra: Partial<MtaStsTransportOptions> = {}): MtaStsTransportOptions {
  return { ...world.mtaStsOptions(), fetchTimeoutMs: 3000, dnsTimeoutMs: 2000, port: world.smtpPort, name: 'sender.example', ...FAST, ...extra };
}

/** Messages the world's MX hosts received for a recipient domain. */
export function receivedFor(world: TestWorld, domain: string) {
  return world.messages.filter((m) => m.recipients.some((r) => r.toLowerCase().endsWith(`@${domain}`)));
}

/** A message for `to`. */
export function mail(to: string | string[], subject = 'test') {
  return { from: 'sender@sender.example', to, subject, text: `hello ${subject}` };
}
