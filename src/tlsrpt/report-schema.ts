/**
 * A JSON Schema (draft-07) of the RFC 8460 §4.4 aggregate report, written from the RFC's Figure 4 and the field
 * descriptions under it. It is strict about what this library emits (no unknown members, integer counts, RFC 3339
 * UTC date-times) and needs no format plug-ins: date-times and IP addresses are checked with patterns.
 *
 * Receivers should be more lenient than this (RFC 8460 allows extensions); it exists to check our own output.
 */

const RFC3339_DATE_TIME = '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$';
const DEC_OCTET = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const IPV4 = `^${DEC_OCTET}(\\.${DEC_OCTET}){3}$`;
// Colon-hexadecimal (RFC 5952) shape; may end in an embedded dotted IPv4 address.
const IPV6 = '^(?=.*:)[0-9A-Fa-f:]+(:(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)(\\.(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)){3})?$';

const ipAddress = { type: 'string', anyOf: [{ pattern: IPV4 }, { pattern: IPV6 }] } as const;
const count = { type: 'integer', minimum: 0 } as const;
const nonEmpty = { type: 'string', minLength: 1 } as const;

/** RFC 8460 §4.4 report schema (JSON Schema draft-07). */
export const TLSRPT_REPORT_JSON_SCHEMA = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'urn:mta-sts-sender:tlsrpt-report:rfc8460',
  title: 'RFC 8460 SMTP TLS aggregate report',
  type: 'object',
  additionalProperties: false,
  required: ['organization-name', 'date-range', 'contact-info', 'report-id', 'policies'],
  properties: {
    'organization-name': nonEmpty,
    'date-range': {
      type: 'object',
      additionalProperties: false,
      required: ['start-datetime', 'end-datetime'],
      properties: {
        'start-datetime': { type: 'string', pattern: RFC3339_DATE_TIME },
        'end-datetime': { type: 'string', pattern: RFC3339_DATE_TIME },
      },
    },
    // RFC 5322 §3.4.1 addr-spec (loosely: local@domain).
    'contact-info': { type: 'string', pattern: '^[^\\s@]+@[^\\s@]+$' },
    'report-id': nonEmpty,
    policies: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['policy', 'summary'],
        properties: {
          policy: {
            type: 'object',
            additionalProperties: false,
            required: ['policy-type', 'policy-domain'],
            properties: {
              'policy-type': { enum: ['tlsa', 'sts', 'no-policy-found'] },
              'policy-string': { type: 'array', items: { type: 'string' } },
              'policy-domain': nonEmpty,
              'mx-host': { type: 'array', items: { type: 'string' } },
            },
          },
          summary: {
            type: 'object',
            additionalProperties: false,
            required: ['total-successful-session-count', 'total-failure-session-count'],
            properties: {
              'total-successful-session-count': count,
              'total-failure-session-count': count,
            },
          },
          'failure-details': {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['result-type', 'failed-session-count'],
              properties: {
                'result-type': {
                  enum: [
                    'starttls-not-supported',
                    'certificate-host-mismatch',
                    'certificate-expired',
                    'certificate-not-trusted',
                    'validation-failure',
                    'tlsa-invalid',
                    'dnssec-invalid',
                    'dane-required',
                    'sts-policy-fetch-error',
                    'sts-policy-invalid',
                    'sts-webpki-invalid',
                  ],
                },
                'sending-mta-ip': ipAddress,
                'receiving-mx-hostname': nonEmpty,
                'receiving-mx-helo': nonEmpty,
                'receiving-ip': ipAddress,
                'failed-session-count': count,
                'additional-information': nonEmpty,
                'failure-reason-code': nonEmpty,
              },
            },
          },
        },
      },
    },
  },
} as const;
