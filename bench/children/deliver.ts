/**
 * Delivery cost (argv[2]: JSON parameters, `impl` one of `nodemailer` (a plain Nodemailer SMTP transport to the MX,
 * STARTTLS with certificate validation), `ours` (createMtaStsTransport, default options) and `ours-tuned`
 * (`txtCheckIntervalMs` 60 s)): `messages` messages sent one after another to the same TLS MX with a warm policy
 * cache. Prints wall and CPU ms per message.
 */
import nodemailer from 'nodemailer';
import { createMtaStsTransport } from '../../src/integrations/nodemailer/index.js';
import { cpuMs, params, report, type ChildParams } from './common.js';

interface DeliverParams extends ChildParams {
  impl: 'nodemailer' | 'ours' | 'ours-tuned';
  domain: string;
  mxHost: string;
  mxIp: string;
  messages: number;
}

const p = params<DeliverParams>();
const transporter =
  p.impl === 'nodemailer'
    ? nodemailer.createTransport({ host: p.mxIp, port: p.smtpPort, name: 'bench.local', tls: { servername: p.mxHost, ca: [p.caPem] } })
    : nodemailer.createTransport(
        createMtaStsTransport({ dnsServers: [p.dnsServer], ca: [p.caPem], httpsPort: p.httpsPort, smtpPort: p.smtpPort, name: 'bench.local', ...(p.impl === 'ours-tuned' ? { txtCheckIntervalMs: 60_000 } : {}) }),
      );
const mail = (i: number) => ({ from: 'bench@bench.local', to: `user${i}@${p.domain}`, subject: `bench ${i}`, text: 'Hello from the benchmark.\n' });

for (let i = 0; i < 5; i++) await transporter.sendMail(mail(i)); // warm: policy cached, TLS contexts built, JIT
const cpu0 = cpuMs();
const t0 = performance.now();
for (let i = 0; i < p.messages; i++) await transporter.sendMail(mail(i));
const wallMs = performance.now() - t0;
report({ impl: p.impl, wallMsPerMessage: wallMs / p.messages, cpuMsPerMessage: (cpuMs() - cpu0) / p.messages });
transporter.close();
process.exit(0);
