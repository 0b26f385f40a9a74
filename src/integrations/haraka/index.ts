/**
 * A Haraka outbound plugin: MX selection under MTA-STS (RFC 8461 §4.1, §5).
 *
 * Haraka asks the `get_mx` hook for the hosts to deliver a domain's mail to. For a domain with an `enforce` policy
 * this plugin answers with only the MX hosts the policy lists, in preference order, and with a temporary failure
 * (DENYSOFT: Haraka defers, never bounces, RFC 8461 §5.1) when none is listed. For `testing`, `none` and domains
 * without a policy it steps aside and Haraka looks the MX hosts up as usual.
 *
 * Install: in Haraka's `plugins/` directory create `mta_sts.js`:
 *
 * ```js
 * Object.assign(exports, require('mta-sts-sender/haraka').createHarakaPlugin({ requireTlsEverywhere: false }));
 * ```
 *
 * and add `mta_sts` to `config/plugins`.
 *
 * What the plugin cannot do: Haraka's outbound TLS settings are process-wide (`config/tls.ini`, `[outbound]`), so
 * the plugin cannot require STARTTLS and a valid certificate per MX host itself. To enforce RFC 8461 §4.2 for the
 * domains you deliver to under `enforce`, list them in `force_tls_hosts` and set `rejectUnauthorized=true` and
 * `minVersion=TLSv1.2` in `[outbound]` (Haraka then uses the MX host name as SNI/verification name). Without that,
 * Haraka's opportunistic TLS applies. The plugin does not see TLS sessions, so it does not record TLS-RPT outcomes.
 */
import { MtaStsHooks, type MtaStsHooksOptions } from '../hooks.js';

/** Haraka return codes (`haraka-constants`). */
export const HARAKA = Object.freeze({ CONT: 900, DENY: 902, DENYSOFT: 903, OK: 906 });

/** The `next` callback of a Haraka hook. */
export type HarakaNext = (code?: number, message?: unknown) => void;

/** An MX entry as Haraka's `get_mx` accepts it. */
export interface HarakaMxEntry {
  priority: number;
  exchange: string;
}

export interface HarakaPluginOptions extends MtaStsHooksOptions {
  /** Hooks to use (shared engine, events). Default: new hooks created from the options. */
  hooks?: MtaStsHooks;
}

/** The plugin object: assign its members to the plugin's `exports`. */
export interface HarakaMtaStsPlugin {
  readonly hooks: MtaStsHooks;
  register(this: unknown): void;
  hook_get_mx(this: unknown, next: HarakaNext, hmail: unknown, domain: string): void;
  shutdown(this: unknown): void;
}

/** Creates the plugin. */
export function createHarakaPlugin(options: HarakaPluginOptions = {}): HarakaMtaStsPlugin {
  const hooks = options.hooks ?? new MtaStsHooks(options);
  const log = (plugin: unknown, level: 'loginfo' | 'logwarn', message: string) => {
    const fn = (plugin as Record<string, unknown> | undefined)?.[level];
    if (typeof fn === 'function') (fn as (msg: string) => void).call(plugin, message);
  };
  return {
    hooks,
    register() {
      log(this, 'loginfo', 'mta-sts: restricting MX hosts of domains with an enforce policy (RFC 8461)');
    },
    hook_get_mx(next, _hmail, domain) {
      const plugin = this;
      hooks.planDelivery(domain).then(
        (plan) => {
          if (plan.mode !== 'enforce') return next(); // testing / none / no policy: Haraka's own MX lookup
          if (plan.allowed.length === 0) {
            const reason = `MTA-STS: ${plan.noCandidate?.reason ?? `no MX host of ${domain} is permitted by its enforce policy`}`;
            log(plugin, 'logwarn', reason);
            return next(HARAKA.DENYSOFT, reason); // §5.1: defer, never bounce
          }
          const mx: HarakaMxEntry[] = plan.allowed.map((c) => ({ priority: c.priority, exchange: c.host }));
          log(plugin, 'loginfo', `mta-sts: ${domain} enforce (policy ${plan.lookup.policy?.id}): ${mx.map((m) => m.exchange).join(', ')}`);
          return next(HARAKA.OK, mx);
        },
        (error: Error) => {
          // The MX lookup failed; Haraka's own lookup will meet the same failure and defer.
          log(plugin, 'logwarn', `mta-sts: planning ${domain} failed: ${error.message}`);
          next();
        },
      );
    },
    shutdown() {
      if (!options.hooks) void hooks.close();
    },
  };
}
