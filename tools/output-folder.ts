import { chmod, readdir, rename, rm, stat } from 'node:fs/promises';
import { UsageError } from '../shared/errors';

/**
 * Temporary folders are created private (0700), but a finished output folder is read by the
 * services, possibly as another user in a container.
 */
const OUTPUT_FOLDER_MODE = 0o755;

/**
 * Refuses an output folder that is a file, or a non-empty folder without `force`, so a tool fails
 * before any work; says whether the folder exists (and must be replaced by `moveIntoPlace`).
 */
export async function checkOutputFolder(target: string, force: boolean): Promise<boolean> {
  let entries: string[];
  try {
    if (!(await stat(target)).isDirectory()) throw new Error(`out: ${target} exists and is not a directory`);
    entries = await readdir(target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
  if (entries.length > 0 && !force) throw new Error(`out: ${target} exists and is not empty; pass --force to replace it`);
  return true;
}

/**
 * `checkOutputFolder` for a command's --out flag, before any work: a folder it may not replace is
 * a usage error (exit 2) naming the flag, as every other bad argument is.
 */
export async function checkOutFlag(target: string, force: boolean): Promise<void> {
  try {
    await checkOutputFolder(target, force);
  } catch (error) {
    const message = (error as Error).message;
    if (message.startsWith('out: ')) throw new UsageError(`--${message}`);
    throw error;
  }
}

/**
 * Renames the folder `built` to `target`, readable by everyone. An existing `target` is only
 * removed once the new folder is in place; if that rename fails, the old folder is put back.
 */
export async function moveIntoPlace(built: string, target: string, targetExists: boolean): Promise<void> {
  await chmod(built, OUTPUT_FOLDER_MODE);
  if (!targetExists) {
    await rename(built, target);
    return;
  }
  const retired = `${built}.replaced`;
  await rename(target, retired);
  try {
    await rename(built, target);
  } catch (error) {
    await rename(retired, target);
    throw error;
  }
  await rm(retired, { recursive: true, force: true });
}
