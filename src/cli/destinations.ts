import { resolve } from 'node:path';
import type { Destination } from '../copy/destination';
import { LadingError } from '../errors';
import { OciLayoutDestination } from '../layout/destination';

export interface DestinationOptions {
  plainHttp?: boolean;
  insecure?: boolean;
  username?: string;
  password?: string;
  mountFrom?: string;
  chunkSize?: number;
  env?: NodeJS.ProcessEnv;
  logger?: (line: string) => void;
}

/** Turns a DESTINATION argument into a Destination, and the tags it names. */
export async function openDestination(arg: string, opts: DestinationOptions): Promise<{ destination: Destination; tags: string[] }> {
  if (arg.startsWith('oci:')) {
    const path = arg.slice(4);
    if (path === '') throw new LadingError('USAGE', 'oci: needs a directory path, e.g. oci:./out');
    return { destination: new OciLayoutDestination(resolve(path)), tags: [] };
  }
  void opts;
  throw new LadingError('USAGE', `registry destinations are not available yet: ${arg}`);
}
