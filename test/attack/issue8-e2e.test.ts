/**
 * Issue 8 attacked end to end through the public entry points (createMtaStsTransport, guardTransport,
 * createMtaStsHooks), against the loopback world: a hostile network (delayed TXT, spoofed NXDOMAIN / null MX, MX
 * swapped to an attacker) and a careless operator (throwing logger or listener, options that would be ignored).
 * Security default: under an applicable `enforce` policy every failure defers (4xx, temporary); nothing goes to an
 * unvalidated host and nothing bounces.
 */
import { X509Certificate } from 'node:crypto';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts, type MtaSts } from '../../src/engine.js';
import { createMtaStsTransport, guardTransport, type MtaStsSentMessageInfo } from '../../src/integrations/nodemailer/index.js';
import { createMtaStsHooks, type MtaStsDecision } from '../../src/integrations/hooks.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { FAST, FAST_MS, mail, sendError } from '../integrations/helpers.js';

let world: TestWorld;
let engine: MtaSts;

/** Short DNS deadline: a TXT answer that never comes is a discovery that does not complete (RFC 8461 §3.3). */
const DNS_TIMEOUT_MS = 400;

beforeAll(async () => {
  world = await createTestWorld();
  engine = createMtaSts({ ...world.mtaStsOptions(), fetchTimeoutMs: 3000, dnsTimeoutMs: DNS_TIMEOUT_MS });
});
afterAll(async () => {
  await engine?.close();
  await world?.close();
});

const ENFORCE = (mx: string[], id = 'a1') => ({ id, mode: 'enforce' as const, mx, maxAge: 86400 });

/** A domain with an enforce policy whose policy is cached by `engine` (one lookup). */
async function cachedEnforceDomain(domain: string) {
  const mx = await world.addMx(domain, `mx1.${domain}`);
  world.publishPolicy(domain, ENFORCE([`mx1.${domain}`]));
  const lookup = await engine.getPolicy(domain);
  expect(lookup).toMatchObject({ status: 'policy', policy: { mode: 'enforce' } });
  return mx;
}

function transport(extra: Record<string, unknown> = {}) {
  const t = createMtaStsTransport({ mtaSts: engine, smtpPort: world.smtpPort, name: 'sender.example', ...FAST_MS, ...extra });
  const transporter = nodemailer.createTransport(t);
  return { t, send: (m: ReturnType<typeof mail>) => transporter.sendMail(m) as unknown as Promise<MtaStsSentMessageInfo> };
}

describe.concurrent('issue 8 item 1 end to end: a discovery that does not complete never switches a cached enforce policy off (RFC 8461 §3.3, §10.2)', () => {
  it('transport: TXT answer never comes and the MX is swapped to an attacker: 451 EMTASTS, the attacker gets nothing', async () => {
    const d = 'e2e-txt-timeout.test';
    await cachedEnforceDomain(d);
    const attacker = await world.addMx('attacker-pool.test', `mx.attacker.${d}`);
    world.dns.fail(`_mta-sts.${d}`, 'timeout', 'TXT');
    world.dns.setRecords(d, { mx: [{ exchange: `mx.attacker.${d}`, priority: 1 }] });
    const { send } = transport();
    const error = await sendError(() => send(mail(`ann@${d}`)));
    expect(attacker.messages).toHaveLength(0);
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true, permanent: false, mode: 'enforce' });
    expect(error.attempts[0]).toMatchObject({ mx: `mx.attacker.${d}`, outcome: 'skipped' });
  });

  it('guard: TXT answer never comes and the policy-listed host lost STARTTLS: refused (451), nothing in plaintext', async () => {
    const d = 'e2e-guard-timeout.test';
    const mx = await world.addMx(d, `mx1.${d}`, { starttls: false });
    world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
    await engine.getPolicy(d);
    world.dns.fail(`_mta-sts.${d}`, 'timeout', 'TXT');
    const transporter = nodemailer.createTransport({ host: `mx1.${d}`, port: world.smtpPort, name: 'sender.example', ...FAST } as never);
    guardTransport(transporter, { mtaSts: engine });
    const error = await sendError(() => transporter.sendMail(mail(`bob@${d}`)));
    expect(mx.messages).toHaveLength(0);
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true });
  });

  it('hooks: planDelivery with a 50 ms deadline and the attacker MX plans enforce with no allowed host', async () => {
    const d = 'e2e-hooks-deadline.test';
    await cachedEnforceDomain(d);
    world.dns.fail(`_mta-sts.${d}`, 'timeout', 'TXT');
    const hooks = createMtaStsHooks({ mtaSts: engine });
    const plan = await hooks.planDelivery(d, { mxHosts: [`mx.attacker.${d}`], signal: AbortSignal.timeout(50) });
    expect(plan).toMatchObject({ mode: 'enforce', allowed: [], noCandidate: { action: 'defer' } });
    expect(hooks.deliveryFailed(plan)).toMatchObject({ action: 'defer', temporary: true, replyCode: 451, enhancedStatus: '4.7.5' });
  });
});

describe.concurrent('issue 8 item 3 end to end: spoofed NXDOMAIN / null MX under a cached enforce policy defers, never bounces', () => {
  it('transport: NXDOMAIN for the domain (and its TXT): sendMail fails with 451, permanent false, and nothing is delivered', async () => {
    const d = 'e2e-nxdomain.test';
    const mx = await cachedEnforceDomain(d);
    world.unpublishPolicy(d);
    world.dns.removeName(`mx1.${d}`);
    world.dns.removeName(d);
    const { send } = transport();
    const error = await sendError(() => send(mail(`cat@${d}`)));
    expect(mx.messages).toHaveLength(0);
    // Not ENOMX (documented as permanent: code that bounces on it must not see it here).
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true, permanent: false });
    expect(error.response).toMatch(/^451 4\./);
    expect(error.message).toMatch(/NXDOMAIN/);
  });

  it('transport: a spoofed null MX: 451, permanent false; a domain without policy and a null MX still bounces (556)', async () => {
    const d = 'e2e-nullmx.test';
    await cachedEnforceDomain(d);
    world.dns.setRecords(d, { mx: [{ exchange: '', priority: 0 }] });
    const { send } = transport();
    const error = await sendError(() => send(mail(`dan@${d}`)));
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true, permanent: false });
    expect(error.message).toMatch(/null MX/);
    const plain = 'e2e-nullmx-nopolicy.test';
    world.dns.setRecords(plain, { mx: [{ exchange: '', priority: 0 }] });
    const bounced = await sendError(() => send(mail(`eve@${plain}`)));
    expect(bounced).toMatchObject({ code: 'ENOMX', responseCode: 556, permanent: true });
  });

  it('hooks: NXDOMAIN plan under a cached enforce policy: deliveryFailed() defers (451) and emits defer', async () => {
    const d = 'e2e-hooks-nx.test';
    await cachedEnforceDomain(d);
    world.unpublishPolicy(d);
    world.dns.removeName(`mx1.${d}`);
    world.dns.removeName(d);
    const hooks = createMtaStsHooks({ mtaSts: engine });
    const decisions: MtaStsDecision[] = [];
    hooks.on('decision', (x: MtaStsDecision) => decisions.push(x));
    const plan = await hooks.planDelivery(d);
    expect(plan).toMatchObject({ mode: 'enforce', noCandidate: { action: 'defer' } });
    expect(hooks.deliveryFailed(plan)).toMatchObject({ action: 'defer', temporary: true, replyCode: 451 });
    expect(decisions.filter((x) => x.stage === 'delivery').map((x) => x.action)).toEqual(['defer']);
  });
});

describe.concurrent('issue 8 item 13 end to end: hook users get a final verdict', () => {
  it('every allowed MX refuses its session under enforce: deliveryFailed() defers with 4.7.5 and the result types, emitted once', async () => {
    const d = 'e2e-verdict.test';
    await world.addMx(d, `mx1.${d}`, { cert: 'expired' });
    world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
    const hooks = createMtaStsHooks({ mtaSts: engine });
    const decisions: MtaStsDecision[] = [];
    hooks.on('decision', (x: MtaStsDecision) => decisions.push(x));
    const plan = await hooks.planDelivery(d);
    expect(plan.noCandidate).toMatchObject({ action: 'defer' });
    const candidate = plan.allowed[0]!;
    hooks.handshakeFailed(candidate, Object.assign(new Error('certificate has expired'), { code: 'CERT_HAS_EXPIRED' }), { ip: '127.0.0.1' });
    const final = hooks.deliveryFailed(plan);
    expect(final).toMatchObject({ action: 'defer', temporary: true, replyCode: 451, enhancedStatus: '4.7.5', resultTypes: ['certificate-expired'] });
    expect(decisions.filter((x) => x.stage === 'delivery')).toHaveLength(1);
  });
});

describe.concurrent('fail-open attacks: an exception of ours under enforce defers, never delivers unverified, never bounces', () => {
  const throwingLogger = {
    debug: () => {
      throw new Error('logger down');
    },
    info: () => {
      throw new Error('logger down');
    },
    warn: () => {
      throw new Error('logger down');
    },
    error: () => {
      throw new Error('logger down');
    },
  };

  it('guard with a throwing logger: an enforce domain whose host lost STARTTLS is refused, not relayed in plaintext', async () => {
    const d = 'fo-guard-logger.test';
    const mx = await world.addMx(d, `mx1.${d}`, { starttls: false });
    world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
    const transporter = nodemailer.createTransport({ host: `mx1.${d}`, port: world.smtpPort, name: 'sender.example', ...FAST } as never);
    guardTransport(transporter, { mtaSts: engine, logger: throwingLogger });
    const error = await sendError(() => transporter.sendMail(mail(`fay@${d}`)));
    expect(mx.messages).toHaveLength(0);
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true });
  });

  it('transport with a throwing logger: logging is best effort, a valid enforce domain is delivered once and the send resolves', async () => {
    const d = 'fo-transport-logger.test';
    const mx = await world.addMx(d, `mx1.${d}`);
    world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
    const { send } = transport({ logger: throwingLogger });
    const info = await send(mail(`gus@${d}`));
    expect(info.accepted).toEqual([`gus@${d}`]);
    expect(mx.messages).toHaveLength(1);
    expect(info.mtaSts[d]).toMatchObject({ mode: 'enforce', validated: true });
  });

  it('transport with a throwing outcome listener and a throwing recorder: delivered once, the send resolves', async () => {
    const d = 'fo-transport-listener.test';
    const mx = await world.addMx(d, `mx1.${d}`);
    world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
    const recorder = {
      record: () => {
        throw new Error('recorder down');
      },
    };
    const { t, send } = transport({ recorder });
    t.on('outcome', () => {
      throw new Error('listener bug');
    });
    const info = await send(mail(`hal@${d}`));
    expect(info.accepted).toEqual([`hal@${d}`]);
    expect(mx.messages).toHaveLength(1);
  });

  it('transport: a policy-listed MX refused under enforce with a throwing outcome listener: 451 EMTASTS, not a raw error', async () => {
    const d = 'fo-transport-listener-refuse.test';
    const mx = await world.addMx(d, `mx1.${d}`, { starttls: false });
    world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
    const { t, send } = transport();
    t.on('outcome', () => {
      throw new Error('listener bug');
    });
    const error = await sendError(() => send(mail(`ida@${d}`)));
    expect(mx.messages).toHaveLength(0);
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true });
  });

  it('transport with a hanging store: the cached enforce policy still applies when TXT never answers (local tier)', async () => {
    const d = 'fo-hanging-store.test';
    const never = () => new Promise<never>(() => undefined);
    const store = { get: never, set: never, delete: never };
    const own = createMtaSts({ ...world.mtaStsOptions(), fetchTimeoutMs: 3000, dnsTimeoutMs: DNS_TIMEOUT_MS, store, storeTimeoutMs: 100 });
    try {
      await world.addMx(d, `mx1.${d}`);
      world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
      expect(await own.getPolicy(d)).toMatchObject({ status: 'policy', policy: { mode: 'enforce' } });
      const attacker = await world.addMx('attacker-pool2.test', `mx.attacker.${d}`);
      world.dns.fail(`_mta-sts.${d}`, 'timeout', 'TXT');
      world.dns.setRecords(d, { mx: [{ exchange: `mx.attacker.${d}`, priority: 1 }] });
      const t = nodemailer.createTransport(createMtaStsTransport({ mtaSts: own, smtpPort: world.smtpPort, name: 'sender.example', ...FAST_MS }));
      const error = await sendError(() => t.sendMail(mail(`jo@${d}`)));
      expect(attacker.messages).toHaveLength(0);
      expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true });
    } finally {
      await own.close();
    }
  });

  it('guard: the MX query fails (SERVFAIL) for an enforce domain: a host its policy does not list is deferred, not relayed in plaintext', async () => {
    const d = 'fo-guard-servfail.test';
    await world.addMx(d, `mx1.${d}`);
    const unlisted = await world.addMx(d, `mx2.${d}`, { starttls: false, priority: 20 });
    world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
    await engine.getPolicy(d);
    const transporter = nodemailer.createTransport({ host: `mx2.${d}`, port: world.smtpPort, name: 'sender.example', ...FAST } as never);
    const guard = guardTransport(transporter, { mtaSts: engine });
    const relays: MtaStsDecision[] = [];
    guard.on('decision', (x: MtaStsDecision) => x.action === 'relay' && relays.push(x));
    // Without the attack the guard refuses the unlisted host (RFC 8461 §4.1).
    expect(await sendError(() => transporter.sendMail(mail(`kim@${d}`)))).toMatchObject({ code: 'EMTASTS', responseCode: 451 });
    world.dns.fail(d, 'servfail', 'MX');
    const error = await sendError(() => transporter.sendMail(mail(`lee@${d}`)));
    expect(unlisted.messages).toHaveLength(0);
    expect(relays).toEqual([]); // never handed to the transport as a relay (no MTA-STS on that path)
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true, permanent: false });
  });

  it('guard: a spoofed null MX for an enforce domain: a host its policy does not list is deferred, not relayed', async () => {
    const d = 'fo-guard-nullmx.test';
    await world.addMx(d, `mx1.${d}`);
    const unlisted = await world.addMx(d, `mx2.${d}`, { starttls: false, priority: 20 });
    world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
    await engine.getPolicy(d);
    world.dns.setRecords(d, { mx: [{ exchange: '', priority: 0 }] });
    const transporter = nodemailer.createTransport({ host: `mx2.${d}`, port: world.smtpPort, name: 'sender.example', ...FAST } as never);
    const guard = guardTransport(transporter, { mtaSts: engine });
    const relays: MtaStsDecision[] = [];
    guard.on('decision', (x: MtaStsDecision) => x.action === 'relay' && relays.push(x));
    const error = await sendError(() => transporter.sendMail(mail(`oli@${d}`)));
    expect(unlisted.messages).toHaveLength(0);
    expect(relays).toEqual([]);
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true, permanent: false });
  });

  it('guard: planning throws (an engine bug) for an enforce domain: deferred, not relayed without MTA-STS', async () => {
    const d = 'fo-guard-plan-throws.test';
    const mx = await world.addMx(d, `mx1.${d}`, { starttls: false });
    world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
    await engine.getPolicy(d);
    const broken = { ...engine, plan: async () => { throw new TypeError('planner bug'); } } as MtaSts;
    const transporter = nodemailer.createTransport({ host: `mx1.${d}`, port: world.smtpPort, name: 'sender.example', ...FAST } as never);
    const guard = guardTransport(transporter, { mtaSts: broken });
    const relays: MtaStsDecision[] = [];
    guard.on('decision', (x: MtaStsDecision) => x.action === 'relay' && relays.push(x));
    const error = await sendError(() => transporter.sendMail(mail(`max@${d}`)));
    expect(mx.messages).toHaveLength(0);
    expect(relays).toEqual([]);
    expect(error).toMatchObject({ responseCode: 451, temporary: true, permanent: false });
  });

  it('transport: delivery throws (a hooks bug) under enforce: 451 EMTASTS deferral, not a raw error', async () => {
    const d = 'fo-transport-throws.test';
    const mx = await world.addMx(d, `mx1.${d}`);
    world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
    const hooks = createMtaStsHooks({ mtaSts: engine });
    hooks.tlsOptionsFor = () => {
      throw new TypeError('tls options bug');
    };
    const t = nodemailer.createTransport(createMtaStsTransport({ hooks, smtpPort: world.smtpPort, name: 'sender.example', ...FAST_MS }));
    const error = await sendError(() => t.sendMail(mail(`ned@${d}`)));
    expect(mx.messages).toHaveLength(0);
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true, permanent: false });
  });
});

describe('misconfiguration fails at creation: options a shared engine or given hooks would leave unused', () => {
  it('createMtaStsTransport({ mtaSts, ca }) and the like throw MTASTS_INVALID_OPTIONS naming the option', () => {
    const hooks = createMtaStsHooks({ mtaSts: engine });
    const cases: Array<[() => unknown, string]> = [
      [() => createMtaStsTransport({ mtaSts: engine, ca: world.ca.rootPem }), 'ca'],
      [() => createMtaStsTransport({ mtaSts: engine, dnsServers: ['127.0.0.1:53'] }), 'dnsServers'],
      [() => createMtaStsTransport({ mtaSts: engine, store: { get: () => undefined, set: () => undefined, delete: () => undefined } }), 'store'],
      [() => createMtaStsHooks({ mtaSts: engine, fetchTimeoutMs: 1000 }), 'fetchTimeoutMs'],
      [() => guardTransport(nodemailer.createTransport({ host: 'mx.example', port: 25 }), { mtaSts: engine, maxPolicyBytes: 100_000 }), 'maxPolicyBytes'],
      [() => createMtaStsTransport({ hooks, recorder: { record: () => undefined } }), 'recorder'],
      [() => createMtaStsTransport({ hooks, requireTlsEverywhere: true }), 'requireTlsEverywhere'],
      [() => guardTransport(nodemailer.createTransport({ host: 'mx.example', port: 25 }), { hooks, mtaSts: engine }), 'mtaSts'],
    ];
    for (const [create, option] of cases) {
      let thrown: unknown;
      try {
        create();
      } catch (error) {
        thrown = error;
      }
      expect(thrown, option).toMatchObject({ code: 'MTASTS_INVALID_OPTIONS', details: { option } });
    }
    // What the hooks themselves use still goes with a shared engine.
    expect(() => createMtaStsTransport({ mtaSts: engine, logger: console, requireTlsEverywhere: true, dnsTimeoutMs: 500, now: Date.now })).not.toThrow();
    expect(() => createMtaStsTransport({ hooks, plaintextFallback: false })).not.toThrow();
  });
});

describe('misconfiguration fails at creation: a clock that does not return epoch ms', () => {
  it('now: () => new Date() is refused at creation (it made every cached policy look expired: a TXT outage then switched enforce off)', async () => {
    const d = 'cfg-date-clock.test';
    await world.addMx(d, `mx1.${d}`);
    world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
    const dateClock = () => new Date() as unknown as number;
    let thrown: unknown;
    let own: MtaSts | undefined;
    try {
      own = createMtaSts({ ...world.mtaStsOptions(), dnsTimeoutMs: DNS_TIMEOUT_MS, now: dateClock });
    } catch (error) {
      thrown = error;
    }
    try {
      if (own) {
        // What the mistake did: the policy is fetched, then a TXT outage switches it off.
        await own.getPolicy(d);
        world.dns.fail(`_mta-sts.${d}`, 'servfail', 'TXT');
        const lookup = await own.getPolicy(d);
        expect(lookup, 'the cached enforce policy was lost').toMatchObject({ status: 'policy', policy: { mode: 'enforce' } });
      }
      expect(thrown).toMatchObject({ code: 'MTASTS_INVALID_OPTIONS', details: { option: 'now' } });
      expect(() => createMtaStsTransport({ mtaSts: engine, now: () => 'x' as unknown as number })).toThrow(/option now/);
      expect(() => createMtaStsHooks({ mtaSts: engine, now: () => Number.NaN })).toThrow(/option now/);
      expect(() => createMtaSts({ now: () => 0 }).close()).not.toThrow();
    } finally {
      await own?.close();
    }
  });
});

describe('downgrade switches reachable from mail options', () => {
  it('a plain tlsRptReport mail option (e.g. copied from a request body) does not relax an enforce policy (RFC 8460 §5.3 is for real reports only)', async () => {
    const d = 'dg-report-marker.test';
    const mx = await world.addMx(d, `mx1.${d}`, { starttls: false });
    world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
    const { send } = transport();
    const forged = { ...mail(`pat@${d}`), tlsRptReport: { policyDomain: d, reportId: 'forged' } };
    const error = await sendError(() => send(forged as ReturnType<typeof mail>));
    expect(mx.messages).toHaveLength(0);
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true });
  });
});

describe('a listener bug never fails (or duplicates) a delivery', () => {
  it('guard: a throwing smart-host listener after the direct domain was delivered: the send resolves, each message arrives once', async () => {
    const d = 'lb-guard-smarthost.test';
    const mx = await world.addMx(d, `mx1.${d}`);
    world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
    const transporter = nodemailer.createTransport({ host: `mx1.${d}`, port: world.smtpPort, name: 'sender.example', ...FAST } as never);
    const guard = guardTransport(transporter, { mtaSts: engine });
    guard.on('smart-host', () => {
      throw new Error('listener bug');
    });
    const info = (await transporter.sendMail(mail([`quinn@${d}`, 'rae@lb-elsewhere.test']))) as unknown as MtaStsSentMessageInfo;
    expect(info.accepted).toEqual(expect.arrayContaining([`quinn@${d}`]));
    expect(mx.messages.filter((m) => m.recipients.includes(`quinn@${d}`))).toHaveLength(1);
    expect(info.mtaSts[d]).toMatchObject({ mode: 'enforce', validated: true });
  });
});

describe('hooks: a client cannot talk the verdict out of its plan', () => {
  it('a plan is frozen: allowed = true on a host the enforce policy does not list throws; a wrong context.plan does not relax the verdict', async () => {
    const d = 'hk-frozen.test';
    await world.addMx(d, `mx1.${d}`);
    world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
    const hooks = createMtaStsHooks({ mtaSts: engine });
    const plan = await hooks.planDelivery(d, { mxHosts: [`mx.attacker.${d}`] });
    const attacker = plan.candidates[0]!;
    expect(attacker).toMatchObject({ allowed: false });
    // The attacker's own host, with a certificate valid for its own name (what a hijacked MX record leads to).
    const cert = world.ca.certFor(`mx.attacker.${d}`);
    const session = { protocol: 'TLSv1.3', authorized: true, peerCertificate: new X509Certificate(cert.certPem) };
    expect(() => {
      (attacker as { allowed: boolean }).allowed = true;
    }).toThrow(TypeError);
    expect(() => {
      (plan as { mode: string }).mode = 'testing';
    }).toThrow(TypeError);
    expect(hooks.verifySession(attacker, session)).toMatchObject({ proceed: false, success: false });
    // A testing plan of another domain passed as context does not replace the candidate's own (enforce) plan.
    const other = 'hk-frozen-testing.test';
    await world.addMx(other, `mx1.${other}`);
    world.publishPolicy(other, { id: 't1', mode: 'testing', mx: [`mx1.${other}`], maxAge: 86400 });
    const testingPlan = await hooks.planDelivery(other, { mxHosts: [`mx.attacker.${d}`] });
    expect(hooks.verifySession(attacker, session, { plan: testingPlan })).toMatchObject({ proceed: false, mode: 'enforce' });
  });
});

describe('guard: credentials never go out in plaintext because of the guard', () => {
  it('a transport with auth: a failed STARTTLS handshake (outside enforce) is not retried in plaintext, so AUTH is never sent in clear', async () => {
    const { SMTPServer } = await import('smtp-server');
    const d = 'cred-guard.test';
    const logins: string[] = [];
    // An MX (or an attacker in its place) offering STARTTLS with an untrusted certificate and AUTH on plaintext.
    const server = new SMTPServer({
      allowInsecureAuth: true,
      authMethods: ['PLAIN', 'LOGIN'],
      onAuth(auth, session, callback) {
        logins.push(`${auth.username}:${auth.password}:${session.secure ? 'tls' : 'plain'}`);
        callback(null, { user: auth.username });
      },
      onData(stream, _session, callback) {
        stream.resume();
        stream.on('end', () => callback());
      },
      logger: false,
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.server.address() as { port: number }).port;
      world.dns.setRecords(d, { mx: [{ exchange: `mx1.${d}`, priority: 10 }] });
      world.dns.setRecords(`mx1.${d}`, { a: ['127.0.0.1'] });
      const transporter = nodemailer.createTransport({ host: `mx1.${d}`, port, name: 'sender.example', auth: { user: 'app', pass: 's3cret' }, ...FAST } as never);
      guardTransport(transporter, { mtaSts: engine });
      const outcome = await transporter.sendMail(mail(`pia@${d}`)).then(
        (info) => ({ info }),
        (error: unknown) => ({ error }),
      );
      expect(logins).toEqual([]);
      expect(outcome).toMatchObject({ error: { temporary: true } });
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('a closed engine fails loudly, never plans mode none', () => {
  it('a transport sharing an engine that was closed defers (451) a new enforce domain instead of delivering it unprotected', async () => {
    const d = 'closed-engine.test';
    const mx = await world.addMx(d, `mx1.${d}`, { starttls: false });
    world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
    const own = createMtaSts({ ...world.mtaStsOptions(), fetchTimeoutMs: 3000, dnsTimeoutMs: DNS_TIMEOUT_MS });
    const t = nodemailer.createTransport(createMtaStsTransport({ mtaSts: own, smtpPort: world.smtpPort, name: 'sender.example', ...FAST_MS }));
    await cachedEnforceDomain('closed-engine-earlier.test'); // the shared engine has fetched before (its dispatcher exists)
    expect(await own.getPolicy('closed-engine-earlier.test')).toMatchObject({ status: 'policy' });
    await own.close(); // e.g. a configuration reload that closed the old engine while a transport still used it
    const outcome = await t.sendMail(mail(`ray@${d}`)).then(
      (info) => ({ info }),
      (error: unknown) => ({ error }),
    );
    expect(mx.messages).toHaveLength(0);
    expect(outcome).toMatchObject({ error: { responseCode: 451, temporary: true, permanent: false } });
    await expect(own.plan(d)).rejects.toMatchObject({ code: 'MTASTS_ABORTED', temporary: true, details: { reason: 'closed' } });
    expect(await own.getPolicy(d)).toMatchObject({ status: 'temp-error', error: { code: 'MTASTS_ABORTED' } });
  });
});

type Attack = 'txt-servfail' | 'txt-timeout' | 'txt-removed' | 'new-id-500' | 'new-id-bad-cert' | 'new-id-redirect' | 'new-id-hang' | 'policy-host-gone' | 'mx-servfail' | 'null-mx';

/** What a hostile network does to a domain whose enforce policy is cached (RFC 8461 §10.2: it must not help). */
function attack(d: string, kind: Attack): void {
  const newId = () => world.dns.setRecords(`_mta-sts.${d}`, { txt: ['v=STSv1; id=evil1'] });
  switch (kind) {
    case 'txt-servfail':
      return world.dns.fail(`_mta-sts.${d}`, 'servfail', 'TXT');
    case 'txt-timeout':
      return world.dns.fail(`_mta-sts.${d}`, 'timeout', 'TXT');
    case 'txt-removed':
      return world.dns.removeName(`_mta-sts.${d}`);
    case 'new-id-500':
      newId();
      return world.setPolicyHost(d, { kind: 'status', status: 500 });
    case 'new-id-bad-cert':
      newId();
      return world.setPolicyHost(d, { kind: 'cert', cert: 'self-signed' });
    case 'new-id-redirect':
      newId();
      return world.setPolicyHost(d, { kind: 'redirect' });
    case 'new-id-hang':
      newId();
      return world.setPolicyHost(d, { kind: 'hang', maxMs: 5000 });
    case 'policy-host-gone':
      newId();
      return world.dns.removeName(`mta-sts.${d}`);
    case 'mx-servfail':
      return world.dns.fail(d, 'servfail', 'MX');
    case 'null-mx':
      return world.dns.setRecords(d, { mx: [{ exchange: '', priority: 0 }] });
  }
}

const ATTACKS: Attack[] = ['txt-servfail', 'txt-timeout', 'txt-removed', 'new-id-500', 'new-id-bad-cert', 'new-id-redirect', 'new-id-hang', 'policy-host-gone', 'mx-servfail', 'null-mx'];

describe.concurrent('every discovery attack × the transport: a cached enforce policy holds (451, temporary; the attacker MX gets nothing)', () => {
  it.each(ATTACKS)('%s, with the MX records swapped to an attacker host whose certificate is valid for its own name', async (kind) => {
    const d = `matrix-${kind}.test`;
    await cachedEnforceDomain(d);
    const attacker = await world.addMx(`matrix-attacker-${kind}.test`, `mx.attacker.${d}`);
    if (kind !== 'null-mx' && kind !== 'mx-servfail') world.dns.setRecords(d, { mx: [{ exchange: `mx.attacker.${d}`, priority: 1 }] });
    attack(d, kind);
    const { send } = transport();
    const outcome = await send(mail(`sam@${d}`)).then(
      (info) => ({ info }),
      (error: unknown) => ({ error }),
    );
    expect(attacker.messages).toHaveLength(0);
    expect(outcome).toMatchObject({ error: { responseCode: 451, temporary: true, permanent: false } });
    // policy-host-gone: the address record is gone (TTL 0: no DNS answer is reused), but the policy fetch may reuse
    // its kept-alive connection to the genuine host, so the new id can be fetched over validated HTTPS: enforce either way.
    const id = kind === 'policy-host-gone' ? expect.stringMatching(/^(a1|evil1)$/) : 'a1';
    expect(await engine.getPolicy(d)).toMatchObject({ status: 'policy', policy: { mode: 'enforce', id } });
  });
});
