/**
 * A throw-away certificate authority for the test world.
 *
 * MTA-STS is all about certificate validation, so the test world needs a root that clients can be told to trust
 * plus leaf certificates that are broken in precise, realistic ways (wrong name, expired, self-signed, no SAN...).
 * The certificates (RSA 2048, SHA-256 signatures) are built with `node-forge`, an optional peer dependency of the
 * package that `mta-sts-sender/testing` needs at run time. Keys and signatures come from `node:crypto`, many times
 * faster than forge's pure-JavaScript RSA.
 *
 * These are test certificates, so keys are shared to keep a world's start fast (even natively, an RSA 2048 key takes
 * around 100 ms to generate): each CA has its root key, ONE key shared by all the leaves it issues, and one separate
 * key shared by all its self-signed leaves (so a self-signed certificate never carries the key of a CA-issued one).
 * The two leaf keys are generated when the first certificate that needs them is issued.
 */
import { constants, generateKeyPairSync, privateEncrypt, randomBytes } from 'node:crypto';
import type * as forge from 'node-forge';
import { requirePeer } from '../peers.js';

/** node-forge, an optional peer: loaded when a CA is created, with a clear error when it is not installed. */
let forgeModule: typeof forge | undefined;
function loadForge(): typeof forge {
  return (forgeModule ??= requirePeer<typeof forge>('node-forge', 'createTestCa() (mta-sts-sender/testing)'));
}

/**
 * How a host's certificate is made:
 * - `valid`: issued by the test CA for the host name (SAN and CN), currently valid, serverAuth.
 * - `wrong-name`: issued by the test CA, valid, but for a different name (`wrong-name.invalid`).
 * - `expired`: issued by the test CA for the host name, `notAfter` in the past.
 * - `not-yet-valid`: issued by the test CA for the host name, `notBefore` in the future.
 * - `self-signed`: for the host name, but signed by its own key instead of the test CA.
 * - `cn-only`: issued by the test CA with the host name only in the subject CN, no subjectAltName.
 * - `client-auth-only`: issued by the test CA for the host name, but its extendedKeyUsage is clientAuth only (no
 *   serverAuth), so it is not valid for a TLS server.
 *
 * Chain variants: the host presents its leaf followed by the intermediates (leaf first), as a real server does.
 * - `via-intermediate`: root → intermediate CA → leaf, every link valid (a correct chain).
 * - `issuer-leaf`: the leaf is signed by an ordinary leaf of the root (`CA:FALSE`, no keyCertSign): the forged chain.
 * - `issuer-not-ca`: the leaf's issuer is `CA:FALSE` although its keyUsage claims keyCertSign (basic constraints).
 * - `issuer-no-keycertsign`: the intermediate is `CA:TRUE`, but its keyUsage lacks keyCertSign.
 * - `path-length-exceeded`: root → intermediate (`pathLenConstraint: 0`) → intermediate → leaf.
 * - `intermediate-expired` / `intermediate-not-yet-valid`: the intermediate is outside its validity period.
 */
export type CertVariant = 'valid' | 'wrong-name' | 'expired' | 'self-signed' | 'cn-only' | 'not-yet-valid' | 'client-auth-only' | ChainVariant;

/** Certificate variants whose leaf is not issued by the root itself (see {@link CertVariant}). */
export type ChainVariant = 'via-intermediate' | 'issuer-leaf' | 'issuer-not-ca' | 'issuer-no-keycertsign' | 'path-length-exceeded' | 'intermediate-expired' | 'intermediate-not-yet-valid';

/** The variants issued directly by the root (or self-signed), in a stable order (handy for table-driven tests). */
export const CERT_VARIANTS: readonly CertVariant[] = Object.freeze([
  'valid',
  'wrong-name',
  'expired',
  'self-signed',
  'cn-only',
  'not-yet-valid',
  'client-auth-only',
]);

/** One certificate between the root and the leaf (see {@link IssueOptions.chain}). */
export interface IntermediateOptions {
  /** basicConstraints cA. Default true; false makes an ordinary leaf act as an issuer. */
  ca?: boolean;
  /** basicConstraints pathLenConstraint. Default: none. */
  pathLength?: number;
  /** keyUsage keyCertSign (and cRLSign). Default: the value of `ca`. */
  keyCertSign?: boolean;
  /** Default: one day ago. */
  notBefore?: Date;
  /** Default: 60 days after `notBefore`. */
  notAfter?: Date;
}

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
  /** extendedKeyUsage purposes. Default `['serverAuth']`. */
  extKeyUsage?: ReadonlyArray<'serverAuth' | 'clientAuth'>;
  /**
   * Intermediates between the root and the leaf, root side first; `certPem` then holds the leaf followed by them
   * (leaf first, as a server presents its chain). Default: none (the root signs the leaf).
   */
  chain?: readonly IntermediateOptions[];
}

/** A certificate and its private key, both PEM (the key is PKCS#8). */
export interface IssuedCert {
  /** The leaf, followed by the intermediates of {@link IssueOptions.chain} when there are any. */
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

/** Creates a new CA with a fresh root key. Synchronous; generating the root key takes around 100 ms. */
export function createTestCa(options: { commonName?: string } = {}): TestCa {
  loadForge();
  const rootKey = newKey();
  const now = Date.now();
  const root = newCertificate({
    subject: distinguishedName(options.commonName ?? 'mta-sts-sender test root CA'),
    publicKey: rootKey.forgePublic,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 365 * DAY),
    extensions: [
      { name: 'basicConstraints', critical: true, cA: true },
      { name: 'keyUsage', critical: true, keyCertSign: true, cRLSign: true },
      { name: 'subjectKeyIdentifier' },
    ],
  });
  root.setIssuer(root.subject.attributes);
  root.sign(rootKey.signer as unknown as forge.pki.rsa.PrivateKey, loadForge().md.sha256.create());
  const rootPem = toPem(root);
  const rootIssuer: Issuer = { cert: root, key: rootKey };

  let leafKey: Key | undefined;
  let selfSignedKey: Key | undefined;
  /** One key per intermediate depth (a chain never reuses a key between its links). */
  const intermediateKeys: Key[] = [];

  const issue = (opts: IssueOptions): IssuedCert => {
    const [firstName] = opts.names;
    if (firstName === undefined) throw new TypeError('issue(): at least one name is required');
    const key = opts.selfSigned ? (selfSignedKey ??= newKey()) : (leafKey ??= newKey());
    const { issuer, pems } = opts.selfSigned ? { issuer: undefined, pems: [] } : issueIntermediates(rootIssuer, intermediateKeys, opts.chain ?? []);
    const notBefore = opts.notBefore ?? new Date(Date.now() - HOUR);
    const purposes = Object.fromEntries((opts.extKeyUsage ?? ['serverAuth']).map((purpose) => [purpose, true]));
    const extensions: object[] = [
      { name: 'basicConstraints', critical: true, cA: false },
      { name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', ...purposes },
      { name: 'subjectKeyIdentifier' },
      // `true`: the certificate's own key, which signs a self-signed certificate.
      { name: 'authorityKeyIdentifier', keyIdentifier: issuer ? keyIdOf(issuer.cert) : true },
    ];
    if (!opts.noSan) {
      extensions.push({ name: 'subjectAltName', altNames: opts.names.map((value) => ({ type: 2 /* dNSName */, value })) });
    }
    const cert = newCertificate({
      subject: distinguishedName(opts.commonName ?? firstName),
      publicKey: key.forgePublic,
      notBefore,
      notAfter: opts.notAfter ?? new Date(notBefore.getTime() + 30 * DAY),
      extensions,
    });
    signWith(cert, issuer ?? { cert, key });
    return { certPem: [toPem(cert), ...pems].join(''), keyPem: key.pkcs8Pem };
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

/**
 * Signs the intermediates of `links` below `root`, root side first, with one key per depth (generated on first use);
 * returns the last one (the leaf's issuer) and their PEMs, leaf side first.
 */
function issueIntermediates(root: Issuer, keys: Key[], links: readonly IntermediateOptions[]): { issuer: Issuer; pems: string[] } {
  let issuer = root;
  const pems: string[] = [];
  links.forEach((link, depth) => {
    const key = (keys[depth] ??= newKey());
    const notBefore = link.notBefore ?? new Date(Date.now() - DAY);
    const isCa = link.ca ?? true;
    // A `CA:FALSE` link is an ordinary leaf (no keyCertSign, serverAuth) that signs anyway: a forged chain.
    const keyCertSign = link.keyCertSign ?? isCa;
    const extensions: object[] = [
      { name: 'basicConstraints', critical: true, cA: isCa, ...(link.pathLength !== undefined ? { pathLenConstraint: link.pathLength } : {}) },
      { name: 'keyUsage', critical: true, digitalSignature: true, ...(keyCertSign ? { keyCertSign: true, cRLSign: true } : { keyEncipherment: true }) },
      ...(isCa ? [] : [{ name: 'extKeyUsage', serverAuth: true }]),
      { name: 'subjectKeyIdentifier' },
      { name: 'authorityKeyIdentifier', keyIdentifier: keyIdOf(issuer.cert) },
    ];
    const cert = newCertificate({
      subject: distinguishedName(isCa ? `mta-sts-sender test intermediate CA ${depth + 1}` : `leaf-${depth + 1}.attacker.invalid`),
      publicKey: key.forgePublic,
      notBefore,
      notAfter: link.notAfter ?? new Date(notBefore.getTime() + 60 * DAY),
      extensions,
    });
    signWith(cert, issuer);
    pems.unshift(toPem(cert));
    issuer = { cert, key };
  });
  return { issuer, pems };
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
    case 'client-auth-only':
      return { names: [host], extKeyUsage: ['clientAuth'] };
    case 'via-intermediate':
      return { names: [host], chain: [{}] };
    case 'issuer-leaf':
      return { names: [host], chain: [{ ca: false }] };
    case 'issuer-not-ca':
      return { names: [host], chain: [{ ca: false, keyCertSign: true }] };
    case 'issuer-no-keycertsign':
      return { names: [host], chain: [{ keyCertSign: false }] };
    case 'path-length-exceeded':
      return { names: [host], chain: [{ pathLength: 0 }, {}] };
    case 'intermediate-expired':
      return { names: [host], chain: [{ notBefore: new Date(now - 60 * DAY), notAfter: new Date(now - DAY) }] };
    case 'intermediate-not-yet-valid':
      return { names: [host], chain: [{ notBefore: new Date(now + DAY), notAfter: new Date(now + 60 * DAY) }] };
  }
}

// --- node-forge helpers ---

/** A certificate that signs others, with its key. */
interface Issuer {
  cert: forge.pki.Certificate;
  key: Key;
}

/** Sets the issuer name and signs `cert` with the issuer's key (SHA-256). */
function signWith(cert: forge.pki.Certificate, issuer: Issuer): void {
  cert.setIssuer(issuer.cert.subject.attributes);
  cert.sign(issuer.key.signer as unknown as forge.pki.rsa.PrivateKey, loadForge().md.sha256.create());
}

/** The subjectKeyIdentifier of `cert` (its issued certificates' authorityKeyIdentifier). */
function keyIdOf(cert: forge.pki.Certificate): string {
  return cert.generateSubjectKeyIdentifier().getBytes();
}

interface Key {
  /** What forge's `cert.sign()` calls: a `sign(md)` that signs natively (below). */
  signer: { sign(md: forge.md.MessageDigest): string };
  forgePublic: forge.pki.rsa.PublicKey;
  /** The private key as PKCS#8 PEM, straight from `node:crypto`, which is what Node's TLS wants. */
  pkcs8Pem: string;
}

/** DER prefix of a PKCS#1 v1.5 DigestInfo for SHA-256 (RFC 8017 §9.2, note 1); the 32-byte digest follows. */
const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/**
 * An RSA 2048 key, generated natively; forge gets the public half as PEM. Signing stays native too: forge's
 * `cert.sign(key, md)` only calls `key.sign(md)`, and an RSA PKCS#1 v1.5 signature is the private-key operation
 * over the DigestInfo with type-1 padding, which `privateEncrypt` does in well under a millisecond (forge's
 * JavaScript RSA takes tens of milliseconds per certificate).
 */
function newKey(): Key {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    signer: {
      sign(md: forge.md.MessageDigest): string {
        if (md.algorithm !== 'sha256') throw new Error(`test CA signs with SHA-256 only, not ${md.algorithm}`);
        const digestInfo = Buffer.concat([SHA256_DIGEST_INFO, Buffer.from(md.digest().getBytes(), 'binary')]);
        return privateEncrypt({ key: privateKey, padding: constants.RSA_PKCS1_PADDING }, digestInfo).toString('binary');
      },
    },
    forgePublic: loadForge().pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString()),
    pkcs8Pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/** An unsigned v3 certificate with a random serial and no issuer yet. */
function newCertificate(c: {
  subject: forge.pki.CertificateField[];
  publicKey: forge.pki.rsa.PublicKey;
  notBefore: Date;
  notAfter: Date;
  extensions: object[];
}): forge.pki.Certificate {
  const cert = loadForge().pki.createCertificate();
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x40; // positive, no leading zero byte (forge writes the hex as the INTEGER as is)
  cert.serialNumber = serial.toString('hex');
  cert.publicKey = c.publicKey;
  cert.validity.notBefore = c.notBefore;
  cert.validity.notAfter = c.notAfter;
  cert.setSubject(c.subject);
  cert.setExtensions(c.extensions); // after publicKey: the key identifiers are computed from it
  return cert;
}

/** PEM with `\n` line ends, like Node's own PEM (forge writes `\r\n`). */
function toPem(cert: forge.pki.Certificate): string {
  return loadForge().pki.certificateToPem(cert).replace(/\r\n/g, '\n');
}

/** `O=mta-sts-sender testing, CN=<commonName>`, as UTF8String (forge's default, PrintableString, has no `*` or `_`). */
function distinguishedName(commonName: string): forge.pki.CertificateField[] {
  // @types/node-forge types valueTagClass as an asn1.Class, but forge reads it as the universal tag (asn1.Type).
  const valueTagClass = loadForge().asn1.Type.UTF8 as number;
  return [
    { name: 'organizationName', value: 'mta-sts-sender testing', valueTagClass },
    { name: 'commonName', value: commonName, valueTagClass },
  ];
}
