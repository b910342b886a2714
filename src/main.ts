import 'reflect-metadata';
import { existsSync } from 'node:fs';
import { ConfigError, parseConfig } from './config/app-config.js';
import { createApp } from './http/create-app.js';

async function bootstrap(): Promise<void> {
  if (existsSync('.env')) process.loadEnvFile('.env');
  let config;
  try {
    config = parseConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
  const app = await createApp(config);
  await app.listen({ port: config.port, host: config.host });
}

await bootstrap();
