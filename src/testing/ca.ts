/**
 * A throw-away certificate authority for the test world.
 *
 * MTA-STS is all about certificate validation, so the test world needs a root that clients can be told to trust
 * plus leaf certificates that are broken in precise, realistic ways (wrong name, expired, self-signed, no SAN...).
 * Certificates are ECDSA P-256, built with a minimal DER writer over `node:crypto`: key generation and signing take
 * well under a millisecond, and the module needs no dependency (`@peculiar/x509` v2 would need a global
 * `reflect-metadata` polyfill, which a test helper must not install into its users' processes).
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';

/**
 * How a host's certificate is made:
 * - `valid`: issued by the test CA for the host name (SAN and CN), currently valid, serverAuth.
 * - `wrong-name`: issued by the test CA, valid, but for a different name (`wrong-name.invalid`).
 * - `expired`: issued by the test CA for the host name, `notAfter` in the past.
 * - `not-yet-valid`: issued by the test CA for the host name, `notBefore` in the future.
 * - `self-signed`: for the host name, but signed by its own key instead of the test CA.
 * - `cn-only`: issued by the test CA with the host name only in the subject CN, no subjectAltName.
 */
export type CertVariant = 'valid' | 'wrong-name' | 'expired' | 'self-signed' | 'cn-only' | 'not-yet-valid';

/** All certificate variants, in a stable order (handy for table-driven tests). */
export const CERT_VARIANTS: readonly CertVariant[] = Object.freeze([
  'valid',
  'wrong-name',
  'expired',
  'self-signed',
  'cn-only',
  'not-yet-valid',
]);

/** What {@link TestCa.issue} should put into a leaf certificate. */
export interface IssueOptions {
  /** DNS names for the subjectAltName extension (wildcards such as `*.example.com` allowed). At least one. */
  names: readonly string[];
  /** Subject CN. Default: the first name. */
  commonName?: string;
  /** Default: one hour ago. */
  notBefore?: Date;
  /** Default: 30 days after `notBefore`. */
  notAfter?: Date;
  /** Leave out the subjectAltName extension (the name is then only in the CN). */
  noSan?: boolean;
  /** Sign the certificate with its own key instead of the CA's. */
  selfSigned?: boolean;
}

/** A certificate and its private key, both PEM (the key is PKCS#8). */
export interface IssuedCert {
  certPem: string;
  keyPem: string;
}

/** The test CA. */
export interface TestCa {
  /** The root certificate (PEM). Hand it to clients as their only trust anchor. */
  readonly rootPem: string;
  /** Issues a new leaf certificate (never cached). */
  issue(options: IssueOptions): IssuedCert;
  /** The certificate of `variant` for `hostname`, cached per (host name, variant). */
  certFor(hostname: string, variant?: CertVariant): IssuedCert;
}

/** The name a `wrong-name` certificate is issued for. */
export const WRONG_CERT_NAME = 'wrong-name.invalid';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Creates a new CA with a fresh root key. Synchronous and fast (about a millisecond). */
export function createTestCa(options: { commonName?: string } = {}): TestCa {
  const rootKeys = newKeyPair();
  const rootName = encodeName(options.commonName ?? 'mta-sts-sender test root CA');
  const rootKeyId = keyIdentifier(rootKeys.spki);
  const now = Date.now();
  const rootDer = buildCertificate({
    subject: rootName,
    issuer: rootName,
    spki: rootKeys.spki,
    signingKey: rootKeys.privateKey,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 365 * DAY),
    extensions: [
      extension(OID.basicConstraints, true, seq(bool(true))),
      extension(OID.keyUsage, true, keyUsage({ keyCertSign: true, cRLSign: true, digitalSignature: true })),
      extension(OID.subjectKeyIdentifier, false, octetString(rootKeyId)),
    ],
  });
  const rootPem = toPem('CERTIFICATE', rootDer);

  const issue = (opts: IssueOptions): IssuedCert => {
    const [firstName] = opts.names;
    if (firstName === undefined) throw new TypeError('issue(): at least one name is required');
    const keys = newKeyPair();
    const notBefore = opts.notBefore ?? new Date(Date.now() - HOUR);
    const notAfter = opts.notAfter ?? new Date(notBefore.getTime() + 30 * DAY);
    const subject = encodeName(opts.commonName ?? firstName);
    const ownKeyId = keyIdentifier(keys.spki);
    const extensions = [
      extension(OID.basicConstraints, true, seq()),
      extension(OID.keyUsage, true, keyUsage({ digitalSignature: true })),
      extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth))),
      extension(OID.subjectKeyIdentifier, false, octetString(ownKeyId)),
      extension(OID.authorityKeyIdentifier, false, seq(tlv(0x80, opts.selfSigned ? ownKeyId : rootKeyId))),
    ];
    if (!opts.noSan) {
      extensions.push(extension(OID.subjectAltName, false, seq(...opts.names.map((n) => tlv(0x82, Buffer.from(n, 'ascii'))))));
    }
    const der = buildCertificate({
      subject,
      issuer: opts.selfSigned ? subject : rootName,
      spki: keys.spki,
      signingKey: opts.selfSigned ? keys.privateKey : rootKeys.privateKey,
      notBefore,
      notAfter,
      extensions,
    });
    return { certPem: toPem('CERTIFICATE', der), keyPem: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
  };

  const cache = new Map<string, IssuedCert>();
  const certFor = (hostname: string, variant: CertVariant = 'valid'): IssuedCert => {
    const host = hostname.toLowerCase().replace(/\.$/, '');
    const key = `${variant} ${host}`;
    let cert = cache.get(key);
    if (!cert) {
      cert = issue(variantOptions(host, variant));
      cache.set(key, cert);
    }
    return cert;
  };

  return { rootPem, issue, certFor };
}

function variantOptions(host: string, variant: CertVariant): IssueOptions {
  const now = Date.now();
  switch (variant) {
    case 'valid':
      return { names: [host] };
    case 'wrong-name':
      return { names: [WRONG_CERT_NAME] };
    case 'expired':
      return { names: [host], notBefore: new Date(now - 30 * DAY), notAfter: new Date(now - DAY) };
    case 'not-yet-valid':
      return { names: [host], notBefore: new Date(now + DAY), notAfter: new Date(now + 30 * DAY) };
    case 'self-signed':
      return { names: [host], selfSigned: true };
    case 'cn-only':
      return { names: [host], noSan: true };
  }
}

// --- X.509 building (RFC 5280) ---

const OID = {
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
} as const;

function newKeyPair(): { privateKey: KeyObject; spki: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { privateKey, spki: publicKey.export({ type: 'spki', format: 'der' }) };
}

/** RFC 5280 §4.2.1.2 allows any method that yields a unique value; SHA-1 of the whole SPKI is fine for tests. */
function keyIdentifier(spki: Buffer): Buffer {
  return createHash('sha1').update(spki).digest();
}

function buildCertificate(c: {
  subject: Buffer;
  issuer: Buffer;
  spki: Buffer;
  signingKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
  extensions: Buffer[];
}): Buffer {
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x40; // positive, no leading zero byte
  const signatureAlgorithm = seq(oid(OID.ecdsaWithSha256));
  const tbs = seq(
    tlv(0xa0, integer(Buffer.from([2]))), // [0] EXPLICIT version v3
    integer(serial),
    signatureAlgorithm,
    c.issuer,
    seq(time(c.notBefore), time(c.notAfter)),
    c.subject,
    c.spki,
    tlv(0xa3, seq(...c.extensions)), // [3] EXPLICIT extensions
  );
  const signature = sign('sha256', tbs, c.signingKey); // DER ECDSA-Sig-Value, as X.509 wants it
  return seq(tbs, signatureAlgorithm, bitString(signature));
}

function encodeName(commonName: string): Buffer {
  const rdn = (type: string, value: string): Buffer => tlv(0x31, seq(oid(type), tlv(0x0c, Buffer.from(value, 'utf8'))));
  return seq(rdn(OID.organization, 'mta-sts-sender testing'), rdn(OID.commonName, commonName));
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), bool(true), octetString(value)) : seq(oid(id), octetString(value));
}

function keyUsage(u: { digitalSignature?: boolean; keyCertSign?: boolean; cRLSign?: boolean }): Buffer {
  // Bits numbered from the most significant bit of the first byte: digitalSignature(0), keyCertSign(5), cRLSign(6).
  const bits = (u.digitalSignature ? 0x80 : 0) | (u.keyCertSign ? 0x04 : 0) | (u.cRLSign ? 0x02 : 0);
  let unused = 0;
  while (unused < 7 && !(bits & (1 << unused))) unused++;
  return tlv(0x03, Buffer.from([unused, bits]));
}

function time(date: Date): Buffer {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-:T]/g, '') + 'Z'; // YYYYMMDDHHMMSSZ
  const year = date.getUTCFullYear();
  // RFC 5280 §4.1.2.5: UTCTime up to 2049, GeneralizedTime from 2050.
  return year < 2050 ? tlv(0x17, Buffer.from(digits.slice(2), 'ascii')) : tlv(0x18, Buffer.from(digits, 'ascii'));
}

function toPem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

// --- DER primitives ---

function tlv(tag: number, content: Buffer): Buffer {
  const n = content.length;
  let header: Buffer;
  if (n < 0x80) header = Buffer.from([tag, n]);
  else if (n < 0x100) header = Buffer.from([tag, 0x81, n]);
  else if (n < 0x10000) header = Buffer.from([tag, 0x82, n >> 8, n & 0xff]);
  else throw new RangeError('DER value too long');
  return Buffer.concat([header, content]);
}

function seq(...items: Buffer[]): Buffer {
  return tlv(0x30, Buffer.concat(items));
}

function integer(unsigned: Buffer): Buffer {
  return tlv(0x02, unsigned[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), unsigned]) : unsigned);
}

function bool(value: boolean): Buffer {
  return tlv(0x01, Buffer.from([value ? 0xff : 0]));
}

function octetString(value: Buffer): Buffer {
  return tlv(0x04, value);
}

function bitString(value: Buffer): Buffer {
  return tlv(0x03, Buffer.concat([Buffer.from([0]), value]));
}

function oid(dotted: string): Buffer {
  const [first = 0, second = 0, ...rest] = dotted.split('.').map(Number);
  const bytes = [first * 40 + second];
  for (const arc of rest) {
    const base128 = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) base128.unshift((v & 0x7f) | 0x80);
    bytes.push(...base128);
  }
  return tlv(0x06, Buffer.from(bytes));
}
