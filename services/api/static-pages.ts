import path from 'node:path';
import express, { type Express, type Request, type Response } from 'express';
import { PROJECT_ROOT } from '../../shared/project-root';

/** The playground's and the docs' own files: plain HTML, CSS and JS, served as they are (no build step). */
export const PUBLIC_DIR = path.join(PROJECT_ROOT, 'services', 'api', 'public');

/**
 * Same-origin only: the pages load nothing from elsewhere (Swagger UI comes from the
 * swagger-ui-dist package, not a CDN) and call only this api. Swagger UI sets inline styles and
 * draws its icons as data: images.
 */
const PAGE_POLICY = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/** Swagger UI's browser files, as the swagger-ui-dist package ships them. */
const SWAGGER_UI_DIR = path.dirname(require.resolve('swagger-ui-dist/package.json'));

/** Adds `GET /` (the playground), `GET /docs` (Swagger UI on /openapi.json), and their assets under /static/ and /docs/assets/. */
export function mountStaticPages(app: Express): void {
  const page = (file: string) => (_req: Request, res: Response) => {
    res.setHeader('Content-Security-Policy', PAGE_POLICY);
    res.sendFile(path.join(PUBLIC_DIR, file));
  };
  app.get('/', page('index.html'));
  app.get('/docs', page('docs.html'));
  app.use('/static', express.static(PUBLIC_DIR, { index: false }));
  app.use('/docs/assets', express.static(SWAGGER_UI_DIR, { index: false }));
}
