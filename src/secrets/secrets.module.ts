import { Module } from '@nestjs/common';
import { SigningSecretsService } from './signing-secrets.service.js';

@Module({
  providers: [SigningSecretsService],
  exports: [SigningSecretsService],
})
export class SecretsModule {}
