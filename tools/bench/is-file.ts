import { stat } from 'node:fs/promises';

/** Whether `file` exists and is a regular file (a missing path or a folder is false, not an error). */
export async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}
