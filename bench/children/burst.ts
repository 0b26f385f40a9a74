/**
 * A burst (argv[2]: JSON parameters): `sends` concurrent sendMail calls through createMtaStsTransport (default
 * options) to one cold domain. The parent counts the DNS queries and policy GETs its servers saw.
 */
import nodemailer from 'nodemailer';
import { createMtaStsTransport } from '../../src/integrations/nodemailer/index.js';
import { params, report, type ChildParams } from './common.js';

interface BurstParams extends ChildParams {
  domain: string;
  sends: number;
}

const p = params<BurstParams>();
const transporter = nodemailer.createTransport(createMtaStsTransport({ dnsServers: [p.dnsServer], ca: [p.caPem], httpsPort: p.httpsPort, smtpPort: p.smtpPort, name: 'bench.local' }));
const t0 = performance.now();
const outcomes = await Promise.allSettled(
  Array.from({ length: p.sends }, (_, i) => transporter.sendMail({ from: 'bench@bench.local', to: `user${i}@${p.domain}`, subject: `burst ${i}`, text: 'burst\n' })),
);
const failures = outcomes.filter((o) => o.status === 'rejected').map((o) => String((o as PromiseRejectedResult).reason?.message ?? o));
report({ sends: p.sends, ok: p.sends - failures.length, failed: failures.length, firstFailure: failures[0], wallMs: performance.now() - t0 });
transporter.close();
process.exit(0);
