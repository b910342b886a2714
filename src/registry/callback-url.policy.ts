import { Inject, Injectable } from '@nestjs/common';
import { DomainException } from '../common/errors.js';
import { AppConfig } from '../config/app-config.js';
import { checkOutboundUrl, type Resolver } from '../http/address-guard.js';

/** Provider token of the DNS resolver used to vet callback URLs; tests substitute a fake one. */
export const CALLBACK_URL_RESOLVER = Symbol('CALLBACK_URL_RESOLVER');

/**
 * The registration-time half of the SSRF guard (the connection-time half runs in the delivery
 * engine): scheme, credentials, and every address the host resolves to, against the configured
 * ALLOW_HTTP_CALLBACKS and CALLBACK_ALLOWED_HOSTS.
 */
@Injectable()
export class CallbackUrlPolicy {
  constructor(
    private readonly config: AppConfig,
    @Inject(CALLBACK_URL_RESOLVER) private readonly resolve: Resolver,
  ) {}

  async assertAcceptable(url: string, field = 'callbackUrl'): Promise<void> {
    const rejection = await checkOutboundUrl(
      url,
      { allowHttp: this.config.allowHttpCallbacks, allowedHosts: this.config.callbackAllowedHosts },
      this.resolve,
    );
    if (rejection === null) return;
    if (rejection.code === 'VALIDATION_FAILED') throw DomainException.field(field, rejection.message);
    throw new DomainException(rejection.code, rejection.message);
  }
}
