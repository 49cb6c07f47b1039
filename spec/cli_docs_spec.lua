-- spec/cli_docs_spec.lua - the man page and the bash completion script are
-- generated from the help text (tools/gen-docs, `make docs`) and the
-- committed copies are current.

local H = require "helpers.cli"
local cli = require "layerup.cli"

local q = H.quote

local function strip_date(man)
	-- help2man stamps the month into the .TH line; the rest must match.
	return (man:gsub('\n%.TH [^\n]*', "\n.TH"))
end

describe("layerup docs", function()
	it("completion bash prints a valid script that completes commands and options", function()
		local code, out = H.run { "completion", "bash" }
		assert.equal(0, code)
		for _, name in ipairs(cli.commands) do
			assert.matches(name, out, 1, true)
		end
		assert.equal(out, H.read("contrib/layerup.bash"), "contrib/layerup.bash is stale: run `make docs`")
		local dir = H.tmpdir()
		H.write(dir .. "/c.bash", out)
		assert.equal(0, H.sh("bash -n " .. q(dir .. "/c.bash")))
		local script = ([[
			source %s
			COMP_WORDS=(layerup pu); COMP_CWORD=1; _layerup; echo "${COMPREPLY[*]}" >%s/1
			COMP_WORDS=(layerup purge --older); COMP_CWORD=2; _layerup; echo "${COMPREPLY[*]}" >%s/2
			COMP_WORDS=(layerup cat -); COMP_CWORD=2; _layerup; echo "${COMPREPLY[*]}" >%s/3
		]]):format(q(dir .. "/c.bash"), q(dir), q(dir), q(dir))
		assert.equal(0, H.sh("bash -c " .. q(script)))
		assert.equal("push purge\n", H.read(dir .. "/1"))
		assert.equal("--older-than\n", H.read(dir .. "/2"))
		assert.matches("%-o", H.read(dir .. "/3"))
		assert.matches("--output", H.read(dir .. "/3"), 1, true)
		H.rm(dir)
		assert.equal(2, (H.run { "completion", "fish" }))
	end)

	it("the man page is help2man's rendering of the current help", function()
		if H.sh("command -v help2man >/dev/null") ~= 0 then
			pending("help2man is not installed (tools/bootstrap installs it)")
			return
		end
		local dir = H.tmpdir()
		local code = H.sh("tools/gen-docs " .. q(dir) .. " >/dev/null 2>&1")
		assert.equal(0, code)
		local fresh = H.read(dir .. "/layerup.1")
		H.rm(dir)
		local committed = H.read("doc/layerup.1")
		assert.truthy(committed, "doc/layerup.1 is missing: run `make docs`")
		assert.equal(strip_date(fresh), strip_date(committed), "doc/layerup.1 is stale: run `make docs`")
		for _, name in ipairs(cli.commands) do
			assert.matches(".SS " .. name .. "\n", committed, 1, true)
		end
		assert.matches("130", committed, 1, true)
	end)
end)
