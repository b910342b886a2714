import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';

export function setupOpenApi(app: NestFastifyApplication): void {
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Switchyard')
      .setDescription(
        'Self-hosted trigger manager: cron triggers, signed webhooks, flows that pause and resume. ' +
          'Errors are `{statusCode, code, message}`; lists are `{items, nextCursor}`.',
      )
      .setVersion(process.env.npm_package_version ?? '0.1.0')
      .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'Machine-user token (sy_…) or the admin token' })
      .build(),
  );
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json' });
}
