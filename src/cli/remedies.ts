import type { LadingError, Remedy } from '../errors';

/** The remedies the library names, in the terms of this command's flags (the CDK handler has its own). */
const REMEDIES: Record<Remedy, string> = {
  'choose-image': 'choose one with --image, or push them all with --all-images',
  'choose-platforms': 'push the platforms it holds alone with --platform',
  'run-again': 'run the command again',
};

/** An error's message with the remedy it names, worded for the command line. */
export function withRemedy(e: LadingError): string {
  return e.remedy ? `${e.message}; ${REMEDIES[e.remedy]}` : e.message;
}
