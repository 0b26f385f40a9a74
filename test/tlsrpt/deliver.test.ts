/**
 * Delivery against real servers on loopback: the test world's SMTP MX hosts and HTTPS hosts (with its CA and DNS
 * server), and an smtp-server started here. Nothing is mocked.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPairSync } from 'node:crypto';
import type { LookupFunction } from 'node:net';
import nodemailer from 'nodemailer';
import { simpleParser } from 'mailparser';
import { Agent } from 'undici';
import { createDefaultResolver, type DnsResolver } from '../../src/discovery/resolver.js';
import { createTestWorld, type TestMxHost, type TestWorld } from '../../src/testing/index.js';
import {
  TLSRPT_MAIL_MARKER,
  composeTlsRptMail,
  createReportHttpsAgent,
  postTlsRptReport,
  sendTlsRptMail,
  type TlsRptMailTransport,
} from '../../src/tlsrpt/deliver.js';
import { currentReportDelivery } from '../../src/tlsrpt/recorder.js';
import { buildTlsRptReport, gunzipTlsRptReport, gzipTlsRptReport, tlsRptFileName, utcDayRange } from '../../src/tlsrpt/report.js';
import type { TlsRptReport } from '../../src/tlsrpt/types.js';
import { DAY, schemaErrors, stsPolicy } from './helpers.js';

let world: TestWorld;
let resolver: DnsResolver;
let mx: TestMxHost;
let report: TlsRptReport;
let gz: Buffer;
const submitter = 'mta.sender.test';
const filename = tlsRptFileName({ submitter, policyDomain: 'reports.test', dateRange: utcDayRange(DAY), uniqueId: 'abc123' });

beforeAll(async () => {
  world = await createTestWorld();
  resolver = createDefaultResolver({ dnsServers: world.dns.servers, timeoutMs: 1000, tries: 1 });
  mx = await world.addMx('reports.test', 'mx.reports.test', { rejectRecipients: ['refused@reports.test'] });
  report = buildTlsRptReport({
    organizationName: 'Sender Test Org',
    contactInfo: 'tlsrpt@sender.test',
    reportId: `${DAY}_reports.test_abc123@${submitter}`,
    dateRange: utcDayRange(DAY),
    policies: [{ policy: stsPolicy('reports.test'), successCount: 12, failureCount: 2, failures: [{ resultType: 'certificate-host-mismatch', receivingMxHostname: 'mx.reports.test', receivingIp: '127.0.0.2', count: 2 }] }],
  });
  gz = await gzipTlsRptReport(report);
});

afterAll(async () => {
  await world.close();
});

function smtpTransport(extra: Record<string, unknown> = {}) {
  return nodemailer.createTransport({
    host: mx.ip,
    port: world.smtpPort,
    tls: { ca: [world.ca.rootPem], servername: 'mx.reports.test' },
    connectionTimeout: 5000,
    ...extra,
  });
}

describe('mail delivery (§5.3) to a real SMTP server of the test world', () => {
  it('§5.3 sends multipart/report; report-type=tlsrpt with every header, part and the §5.1 file name, DKIM-signed', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const transport = smtpTransport();
    const before = world.messages.length;
    const result = await sendTlsRptMail(transport, report, gz, {
      from: 'noreply-tlsrpt@sender.test',
      to: 'tlsrpt@reports.test',
      submitter,
      filename,
      dkim: { domainName: 'sender.test', keySelector: 'tlsrpt', privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
    });
    transport.close();
    expect(result.messageId).toMatch(/^<.+>$/);

    const received = world.messages[before]!;
    expect(received).toMatchObject({ mxHost: 'mx.reports.test', envelopeFrom: 'noreply-tlsrpt@sender.test', recipients: ['tlsrpt@reports.test'], secure: true });
    const raw = received.raw.toString('utf8');
    const head = raw.slice(0, raw.indexOf('\r\n\r\n'));
    // exact field names as the RFC writes them
    expect(head).toMatch(/^TLS-Report-Domain: reports\.test$/m);
    expect(head).toMatch(/^TLS-Report-Submitter: mta\.sender\.test$/m);
    expect(head).toMatch(/^Content-Type: multipart\/report; report-type=tlsrpt;/m);
    expect(head.match(/^Content-Type:/gm)).toHaveLength(1);

    const mail = await simpleParser(received.raw);
    expect(mail.headers.get('content-type')).toMatchObject({ value: 'multipart/report', params: { 'report-type': 'tlsrpt' } });
    expect(mail.headers.get('tls-report-domain')).toBe('reports.test');
    expect(mail.headers.get('tls-report-submitter')).toBe(submitter);
    expect(mail.subject).toBe(`Report Domain: reports.test Submitter: ${submitter} Report-ID: <${report['report-id']}>`);
    expect(mail.from?.text).toBe('noreply-tlsrpt@sender.test');
    expect(mail.to && !Array.isArray(mail.to) ? mail.to.text : '').toBe('tlsrpt@reports.test');
    expect(mail.messageId).toBe(result.messageId);
    expect(mail.date).toBeInstanceOf(Date);

    // §5.3: DKIM signature by the reporting domain, covering the TLS-Report header fields, without l=
    expect(mail.headers.has('dkim-signature')).toBe(true);
    const dkimLine = raw.slice(raw.indexOf('DKIM-Signature:'), raw.indexOf('\r\n', raw.indexOf(' b=')));
    expect(dkimLine).toMatch(/d=sender\.test;/);
    expect(dkimLine).toMatch(/s=tlsrpt;/);
    expect(dkimLine.replace(/\r\n\s+/g, '')).toMatch(/h=[^;]*tls-report-domain:tls-report-submitter/);
    expect(dkimLine).not.toMatch(/\bl=/);

    // the human-readable part
    expect(mail.text).toContain('aggregate SMTP TLS report (RFC 8460)');
    expect(mail.text).toContain('Successful sessions: 12');
    expect(mail.text).toContain(filename);

    // the report: application/tlsrpt+gzip named <submitter>!<domain>!<begin>!<end>!<id>.json.gz
    expect(mail.attachments).toHaveLength(1);
    const attachment = mail.attachments[0]!;
    expect(attachment.contentType).toBe('application/tlsrpt+gzip');
    expect(attachment.filename).toBe(`mta.sender.test!reports.test!1795305600!1795391999!abc123.json.gz`);
    expect(attachment.contentDisposition).toBe('attachment');
    const sent = await gunzipTlsRptReport(attachment.content);
    expect(sent).toEqual(report);
    expect(schemaErrors(sent)).toBe('');
  });

  it('§5.3 report mail carries the report marker and runs as a report delivery (its session is not counted)', async () => {
    const seen: Array<{ marker: unknown; context: unknown }> = [];
    const inner = smtpTransport();
    const wrapper: TlsRptMailTransport = {
      async sendMail(mail) {
        const info = await inner.sendMail(mail);
        // what an MTA-STS-aware transport would see when it records its session afterwards
        await new Promise((resolve) => setImmediate(resolve));
        seen.push({ marker: (mail as Record<string, unknown>)[TLSRPT_MAIL_MARKER], context: currentReportDelivery() });
        return info;
      },
    };
    await sendTlsRptMail(wrapper, report, gz, { from: 'noreply-tlsrpt@sender.test', to: 'tlsrpt@reports.test', submitter, filename });
    inner.close();
    expect(seen).toEqual([
      { marker: { policyDomain: 'reports.test', reportId: report['report-id'] }, context: { policyDomain: 'reports.test', reportId: report['report-id'] } },
    ]);
    expect(currentReportDelivery()).toBeUndefined();
  });

  it('§5.3 reports are delivered despite TLS problems at the reporting domain (opportunistic transport)', async () => {
    const plain = await world.addMx('notls.test', 'mx.notls.test', { starttls: false });
    const transport = nodemailer.createTransport({ host: plain.ip, port: world.smtpPort, connectionTimeout: 5000 });
    await sendTlsRptMail(transport, report, gz, { from: 'noreply-tlsrpt@sender.test', to: 'tlsrpt@notls.test', submitter, filename });
    transport.close();
    expect(plain.messages).toHaveLength(1);
    expect(plain.messages[0]!.secure).toBe(false);
  });

  it('a rejected recipient is TLSRPT_DELIVERY_FAILED (temporary, retried by the reporter)', async () => {
    const transport = smtpTransport();
    await expect(sendTlsRptMail(transport, report, gz, { from: 'noreply-tlsrpt@sender.test', to: 'refused@reports.test', submitter, filename })).rejects.toMatchObject({
      code: 'TLSRPT_DELIVERY_FAILED',
      temporary: true,
      details: { to: 'refused@reports.test', responseCode: 550 },
    });
    transport.close();
  });

  it('an unreachable server is TLSRPT_DELIVERY_FAILED', async () => {
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: 9, connectionTimeout: 2000 });
    await expect(sendTlsRptMail(transport, report, gz, { from: 'a@sender.test', to: 'tlsrpt@reports.test', submitter, filename })).rejects.toMatchObject({ code: 'TLSRPT_DELIVERY_FAILED' });
  });

  it('§5.3 the attachment name is one quoted filename="…" parameter, never RFC 2231 continuations', async () => {
    const long = tlsRptFileName({ submitter: 'outbound-mta-cluster-01.mail.sender.test', policyDomain: 'a-rather-long-policy-domain.reports.test', dateRange: utcDayRange(DAY), uniqueId: 'abcdef0123456789' });
    expect(long.length).toBeGreaterThan(80);
    const raw = (await composeTlsRptMail(report, gz, { from: 'a@s.test', to: 'b@r.test', submitter, filename: long })).toString('latin1');
    const unfolded = raw.replace(/\r\n[ \t]+/g, ' ');
    expect(unfolded).not.toMatch(/filename\*|name\*/);
    expect(unfolded).toContain(`Content-Disposition: attachment; filename="${long}"`);
    expect(unfolded).toContain(`Content-Type: application/tlsrpt+gzip; name="${long}"`);
    const parsed = await simpleParser(raw);
    expect(parsed.attachments[0]).toMatchObject({ filename: long, contentType: 'application/tlsrpt+gzip' });
    expect(await gunzipTlsRptReport(parsed.attachments[0]!.content)).toEqual(report);
    await expect(composeTlsRptMail(report, gz, { from: 'a@s.test', to: 'b@r.test', submitter, filename: 'bad"name.json.gz' })).rejects.toMatchObject({ code: 'TLSRPT_REPORT_INVALID' });
  });

  it('composeTlsRptMail needs a report with a policy', async () => {
    await expect(composeTlsRptMail({ ...report, policies: [] }, gz, { from: 'a@s.test', to: 'b@r.test', submitter, filename })).rejects.toMatchObject({ code: 'TLSRPT_REPORT_INVALID' });
  });
});

describe('HTTPS delivery (§5.4) to a real HTTPS host of the test world', () => {
  const agent = () => createReportHttpsAgent({ resolver, ca: world.ca.rootPem, allowInternalDestinations: true });

  it('§5.4 POSTs the gzipped report as application/tlsrpt+gzip; 2xx is success', async () => {
    world.addHttpsHost('tlsrpt.reports.test', { handler: (_req, res) => res.writeHead(201, { 'content-type': 'text/plain' }).end('thanks\n') });
    const dispatcher = agent();
    const before = world.httpsRequests.length;
    const result = await postTlsRptReport('https://tlsrpt.reports.test/v1/report?x=1', gz, { dispatcher, httpsPort: world.httpsPort, context: { policyDomain: 'reports.test', reportId: report['report-id'] } });
    await dispatcher.close();
    expect(result).toEqual({ status: 201 });
    const request = world.httpsRequests[before]!;
    expect(request).toMatchObject({ hostname: 'tlsrpt.reports.test', method: 'POST', path: '/v1/report?x=1' });
    expect(request.headers['content-type']).toBe('application/tlsrpt+gzip');
    expect(Number(request.headers['content-length'])).toBe(gz.length);
    expect(await gunzipTlsRptReport(request.body)).toEqual(report);
  });

  it('§5.4 works with a caller-supplied undici Agent trusting the test CA and connecting to loopback', async () => {
    world.addHttpsHost('custom.reports.test', { handler: (_req, res) => res.writeHead(200).end() });
    const lookup: LookupFunction = (_host, options, callback) => (options.all ? callback(null, [{ address: '127.0.0.1', family: 4 }]) : callback(null, '127.0.0.1', 4));
    const dispatcher = new Agent({ connect: { ca: world.ca.rootPem, lookup } });
    await expect(postTlsRptReport('https://custom.reports.test/', gz, { dispatcher, httpsPort: world.httpsPort })).resolves.toEqual({ status: 200 });
    await dispatcher.close();
  });

  it('§5.4 a non-2xx answer is TLSRPT_HTTP_STATUS (temporary)', async () => {
    world.addHttpsHost('busy.reports.test', { handler: (_req, res) => res.writeHead(503).end('busy') });
    const dispatcher = agent();
    await expect(postTlsRptReport('https://busy.reports.test/', gz, { dispatcher, httpsPort: world.httpsPort })).rejects.toMatchObject({ code: 'TLSRPT_HTTP_STATUS', temporary: true, details: { status: 503 } });
    await dispatcher.close();
  });

  it('§5.4 redirects are not followed', async () => {
    world.addHttpsHost('moved.reports.test', { handler: (_req, res) => res.writeHead(307, { location: 'https://tlsrpt.reports.test/elsewhere' }).end() });
    const dispatcher = agent();
    const before = world.httpsRequests.length;
    await expect(postTlsRptReport('https://moved.reports.test/', gz, { dispatcher, httpsPort: world.httpsPort })).rejects.toMatchObject({
      code: 'TLSRPT_HTTP_STATUS',
      details: { status: 307, location: 'https://tlsrpt.reports.test/elsewhere' },
    });
    await dispatcher.close();
    expect(world.httpsRequests.slice(before).map((r) => r.hostname)).toEqual(['moved.reports.test']);
  });

  it('an invalid certificate fails the delivery (TLSRPT_DELIVERY_FAILED with the TLS code)', async () => {
    world.addHttpsHost('expired.reports.test', { cert: 'expired', handler: (_req, res) => res.writeHead(200).end() });
    const dispatcher = agent();
    await expect(postTlsRptReport('https://expired.reports.test/', gz, { dispatcher, httpsPort: world.httpsPort })).rejects.toMatchObject({ code: 'TLSRPT_DELIVERY_FAILED', details: { reason: 'CERT_HAS_EXPIRED' } });
    await dispatcher.close();
  });

  it('a server that never answers hits the timeout', async () => {
    world.addHttpsHost('silent.reports.test', { handler: () => undefined });
    const dispatcher = agent();
    const started = Date.now();
    await expect(postTlsRptReport('https://silent.reports.test/', gz, { dispatcher, httpsPort: world.httpsPort, timeoutMs: 300 })).rejects.toMatchObject({ code: 'TLSRPT_DELIVERY_FAILED', details: { reason: 'timeout' } });
    expect(Date.now() - started).toBeLessThan(3000);
    await dispatcher.destroy();
  });

  it('only https URLs are posted to', async () => {
    await expect(postTlsRptReport('http://tlsrpt.reports.test/', gz)).rejects.toMatchObject({ code: 'TLSRPT_DELIVERY_FAILED' });
  });
});
