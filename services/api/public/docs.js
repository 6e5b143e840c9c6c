// Swagger UI (from the swagger-ui-dist package, served by the api) on this api's /openapi.json.
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  window.SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    tryItOutEnabled: true,
    // Validation would send the document to swagger.io: everything stays on this server.
    validatorUrl: null,
  });
});
