// Drives a real Open WebUI in headless Chromium (Debian's, via playwright-core):
// log in, chat with the toggle ON (answer + sources), then a new chat with the toggle OFF,
// then (job.preset) a chat with the model preset, whose toggle should be ON by default.
// With job.mode "unavailable": one chat with the toggle ON (the test has broken the index).
// Usage: node drive_chat.mjs job.json   (job written by harness.py; result goes to job.resultFile)
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const timeout = job.timeoutMs ?? 120000;
const result = { steps: [], on: {}, off: {}, screenshots: [] };

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function step(name) {
  result.steps.push(name);
  console.error(`[drive] ${name}`);
}

async function shot(page, name) {
  const file = path.join(job.screenshotsDir, name);
  await page.screenshot({ path: file });
  result.screenshots.push(file);
}

async function login(page) {
  step('login');
  await page.goto(`${job.baseUrl}/auth`);
  await page.locator('#email').fill(job.email);
  await page.locator('#password').fill(job.password);
  await page.locator('button[type=submit]').first().click();
  await page.locator('#chat-input').waitFor({ timeout });
}

async function newChat(page, model = job.model, label = job.model) {
  await page.goto(`${job.baseUrl}/?models=${encodeURIComponent(model)}`);
  await page.locator('#chat-input').waitFor({ timeout });
  // The selected model is shown in the input bar; make sure it is ours.
  await page.getByText(label, { exact: true }).first().waitFor({ timeout });
}

// Open the Integrations menu and put the toggle in the wanted state; returns its final state.
async function setToggle(page, wanted, screenshotName) {
  await page.locator('#integration-menu-button').click();
  const item = page.getByRole('menuitemcheckbox', { name: job.toggleName });
  await item.waitFor({ timeout });
  const before = (await item.getAttribute('aria-checked')) === 'true';
  if (before !== wanted) {
    await item.click();
    await page.waitForFunction(
      ([name, want]) => {
        const items = [...document.querySelectorAll('[role="menuitemcheckbox"]')];
        const el = items.find((e) => e.textContent.trim().includes(name));
        return el && el.getAttribute('aria-checked') === String(want);
      },
      [job.toggleName, wanted],
      { timeout },
    );
  }
  const after = (await item.getAttribute('aria-checked')) === 'true';
  if (screenshotName) await shot(page, screenshotName);
  await page.keyboard.press('Escape');
  await item.waitFor({ state: 'hidden', timeout }).catch(() => {});
  return { before, after };
}

// Send the question and wait until the answer is complete; returns the answer's message element.
async function ask(page, question = job.question) {
  const input = page.locator('#chat-input');
  await input.click();
  await page.keyboard.type(question);
  await page.locator('#send-message-button').click();
  const answer = page.locator('div[id^="message-"]:has(.chat-assistant)').last();
  await answer.waitFor({ timeout });
  // The Copy button appears once the message is done.
  await answer.locator('.copy-response-button').waitFor({ timeout });
  return answer;
}

async function describeAnswer(page, answer) {
  const chatMatch = page.url().match(/\/c\/([^/?#]+)/);
  const content = answer.locator('#response-content-container');
  return {
    chatId: chatMatch ? chatMatch[1] : null,
    messageId: ((await answer.getAttribute('id')) || '').replace(/^message-/, ''),
    answerText: (await content.count()) ? (await content.innerText()).trim() : '',
    fullText: (await answer.innerText()).trim(),
  };
}

const sourcesButtonName = /^Toggle (1 source|\d+ sources)$/;

async function main() {
  fs.mkdirSync(job.screenshotsDir, { recursive: true });
  const browser = await chromium.launch({
    executablePath: job.chromium,
    args: CHROMIUM_ARGS,
    timeout,
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    context.setDefaultTimeout(timeout);
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') console.error(`[console] ${m.text().slice(0, 300)}`);
    });
    page.on('pageerror', (e) => console.error(`[pageerror] ${e.message.slice(0, 300)}`));

    await login(page);

    if (job.mode === 'unavailable') {
      // One chat with the toggle ON while the index is down: the chat must go on, and say so.
      step('chat with toggle ON, index down');
      result.down = {};
      await newChat(page);
      result.down.toggle = await setToggle(page, true, null);
      const answerDown = await ask(page);
      Object.assign(result.down, await describeAnswer(page, answerDown));
      result.down.sourcesButtonCount = await answerDown
        .getByRole('button', { name: sourcesButtonName })
        .count();
      await shot(page, '09-index-unavailable.png');
      step('done');
      return;
    }

    if (job.mode === 'mcp') {
      // Settings → Admin → Integrations (External Tools), where the test registered Victor
      // through the API.
      step('external tools settings');
      result.mcp = {};
      await page.goto(`${job.baseUrl}/admin/settings/tools`);
      await page.getByText('Integrations', { exact: true }).first().click();
      await page.getByText(job.mcp.serverName).first().waitFor({ timeout }).catch(() => {});
      await page.waitForTimeout(800);
      result.mcp.settingsText = (await page.locator('body').innerText()).trim();
      await shot(page, '10-mcp-external-tools.png');

      step('the connection of Victor');
      // the Victor row: its "Configure" button, next to its switch
      const row = page
        .getByRole('switch')
        .first()
        .locator('xpath=ancestor::div[.//button[not(@role="switch")]][1]');
      await row.locator('button:not([role="switch"])').first().click();
      const dialog = page.getByRole('dialog').last();
      await dialog.waitFor({ timeout });
      await page.waitForTimeout(800);
      result.mcp.connectionText = (await dialog.innerText()).trim();
      result.mcp.connectionUrl = await dialog
        .locator('input')
        .evaluateAll((els) => els.map((e) => e.value).filter((v) => v.includes('/mcp')));
      await shot(page, '11-mcp-connection.png');
      await page.keyboard.press('Escape');

      // One chat with a model whose default tools are Victor's MCP tools (native calling).
      step('chat with the MCP tools');
      await newChat(page, job.mcp.model, job.mcp.label);
      const answerMcp = await ask(page, job.mcp.question);
      Object.assign(result.mcp, await describeAnswer(page, answerMcp));
      await shot(page, '12-mcp-answer.png');

      step('open the first tool call');
      // one call: "View Result from <tool>"; several: "Explored <tool>, <tool>" holding each
      const calls = answerMcp.getByText(/^Explored .*search_code/).filter({ visible: true });
      if (await calls.count()) {
        await calls.first().click();
        await page.waitForTimeout(800);
      }
      await answerMcp
        .getByText(/View Result from .*search_code/)
        .filter({ visible: true })
        .first()
        .click();
      await page.waitForTimeout(800);
      result.mcp.expandedText = (await answerMcp.innerText()).trim();
      await shot(page, '13-mcp-tool-result.png');

      step('the tools of the chat');
      await page.locator('#integration-menu-button').click();
      await page.getByRole('menuitem', { name: /Tools/ }).first().click();
      await page.getByText(job.mcp.serverName, { exact: true }).first().waitFor({ timeout })
        .catch(() => {});
      await page.waitForTimeout(500);
      result.mcp.menuText = (await page.getByRole('menu').last().innerText()).trim();
      await shot(page, '14-mcp-tools-menu.png');
      await page.keyboard.press('Escape');
      step('done');
      return;
    }

    // --- Chat 1: toggle ON ------------------------------------------------------------
    step('chat with toggle ON');
    await newChat(page);
    result.on.toggle = await setToggle(page, true, '01-toggle-menu-on.png');
    const answerOn = await ask(page);
    Object.assign(result.on, await describeAnswer(page, answerOn));
    await shot(page, '02-answer-toggle-on.png');

    step('open sources');
    const sourcesButton = answerOn.getByRole('button', { name: sourcesButtonName });
    result.on.sourcesButtonCount = await sourcesButton.count();
    if (result.on.sourcesButtonCount > 0) {
      result.on.sourcesButtonText = (await sourcesButton.first().innerText()).trim();
      await sourcesButton.first().click();
      const chips = answerOn.locator('button[id^="source-"]');
      await chips.first().waitFor({ timeout });
      result.on.chips = [];
      for (const label of await chips.evaluateAll((els) =>
        els.map((e) => e.getAttribute('aria-label') || ''),
      )) {
        // aria-label is "View source: <n> <name>"
        result.on.chips.push(label.replace(/^View source: \d+ /, ''));
      }
      await shot(page, '03-sources-open.png');

      step('open first source');
      await chips.first().click();
      const dialog = page.getByRole('dialog').last();
      await dialog.waitFor({ timeout }).catch(() => {});
      result.on.firstSourceDialog = (await dialog.count()) ? (await dialog.innerText()).trim() : '';
      await shot(page, '04-source-detail.png');
      await page.keyboard.press('Escape');
    } else {
      result.on.chips = [];
    }

    // --- Chat 2: toggle OFF -----------------------------------------------------------
    step('chat with toggle OFF');
    await newChat(page);
    result.off.toggle = await setToggle(page, false, '05-toggle-menu-off.png');
    const answerOff = await ask(page);
    Object.assign(result.off, await describeAnswer(page, answerOff));
    result.off.sourcesButtonCount = await answerOff
      .getByRole('button', { name: sourcesButtonName })
      .count();
    await shot(page, '06-answer-toggle-off.png');

    // --- Chat 3: the model preset, toggle ON by default -----------------------------
    if (job.preset) {
      step('chat with the preset');
      result.preset = {};
      await newChat(page, job.preset.model, job.preset.label);
      // wanted = true: if the default did not switch it on, "before" says so.
      result.preset.toggle = await setToggle(page, true, '07-preset-toggle-default-on.png');
      const answerPreset = await ask(page, job.preset.question);
      Object.assign(result.preset, await describeAnswer(page, answerPreset));
      const presetSources = answerPreset.getByRole('button', { name: sourcesButtonName });
      result.preset.sourcesButtonCount = await presetSources.count();
      if (result.preset.sourcesButtonCount > 0) {
        result.preset.sourcesButtonText = (await presetSources.first().innerText()).trim();
      }
      await shot(page, '08-preset-answer.png');
    }
    step('done');
  } finally {
    await browser.close();
  }
}

let exitCode = 0;
try {
  await main();
} catch (err) {
  result.error = String(err && err.stack ? err.stack : err);
  console.error(result.error);
  exitCode = 1;
}
fs.writeFileSync(job.resultFile, JSON.stringify(result, null, 1));
process.exit(exitCode);
