import { MachineUser, MachineUserToken } from '../auth/auth.entities.js';
import { Delivery, DeliveryAttempt } from '../delivery/delivery.entities.js';
import { Execution, Flow, FlowEvent, FlowVersion } from '../flows/flows.entities.js';
import { Backend } from '../registry/backend.entity.js';
import { SigningSecret } from '../secrets/signing-secret.entity.js';
import { Application, Project, Tenant } from '../tenancy/tenancy.entities.js';
import { CronTrigger, TriggerRun } from '../triggers/triggers.entities.js';

/** The explicit entity list (MikroORM 7 does no folder discovery here). */
export const ENTITIES = [
  Tenant,
  Project,
  Application,
  MachineUser,
  MachineUserToken,
  Backend,
  SigningSecret,
  Delivery,
  DeliveryAttempt,
  CronTrigger,
  TriggerRun,
  Flow,
  FlowVersion,
  Execution,
  FlowEvent,
];
