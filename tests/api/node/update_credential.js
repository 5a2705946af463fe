// Updates a credential's description through the official Node client, @ngrok/ngrok-api,
// and prints the updated credential as JSON: node update_credential.js URL KEY ID DESCRIPTION
const { Ngrok } = require("@ngrok/ngrok-api");

const [baseUrl, apiToken, id, description] = process.argv.slice(2);
const ngrok = new Ngrok({ apiToken, baseUrl });
ngrok.credentials
  .update({ id, description })
  .then((credential) => {
    process.stdout.write(JSON.stringify(credential));
  })
  .catch((error) => {
    process.stderr.write(`${error}\n${JSON.stringify(error.body || error.message)}\n`);
    process.exit(1);
  });
