import { extendZodWithOpenApi } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';

// `.openapi(...)` (names, examples, parameter metadata) on every zod schema of the api: the
// schemas import z from here, so the extension is in place before any of them is built.
extendZodWithOpenApi(z);

export { z };
