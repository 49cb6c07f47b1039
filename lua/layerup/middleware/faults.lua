-- layerup.middleware.faults: inject failures into a driver.
--   local d2 = faults(d, spec_or_list [, {raw = bool}])
-- A spec names an op (see layerup.middleware for the names, e.g.
-- "put_content", "writer.write", "writer.commit", "reader.read") and when
-- it fails:
--   nth = 3          the 3rd call of that op fails (counted per spec)
--   times = 2        ... and the next ones too, 2 failures in all (default 1)
--   p = 0.1, seed = 42   each call fails with probability p (reproducible)
--   path = "/data$"  only calls whose path matches this Lua pattern count
-- and how: transient = true|false (default false), code (default "IO"),
-- message, partial = true (writer.write only: half of the bytes are
-- written before the failure, as a real short write would leave them).
-- A second result counts what happened:
--   {failures = total, specs = {{op=, calls=, failures=, ...}, ...}}

local mw = require "layerup.middleware"
local retry = require "layerup.retry"

local function compile(spec, index)
	assert(type(spec) == "table" and type(spec.op) == "string",
		"faults: each spec needs op = name")
	assert(spec.nth or spec.p, "faults: each spec needs nth = N or p = probability")
	local s = {
		op = spec.op,
		nth = spec.nth,
		times = spec.times or 1,
		p = spec.p,
		path = spec.path,
		code = spec.code or "IO",
		transient = spec.transient == true,
		partial = spec.partial == true,
		message = spec.message,
		calls = 0,
		failures = 0,
	}
	if s.p then
		s.random = retry.prng(spec.seed or index)
	end
	local ok, err = pcall(mw.error, s.code, "check")
	assert(ok, "faults: " .. tostring(err))
	return s
end

-- Does this call of s's op fail?  Counts the call.
local function fires(s, path)
	if s.path and not (type(path) == "string" and path:find(s.path)) then
		return false
	end
	s.calls = s.calls + 1
	if s.nth then
		return s.calls >= s.nth and s.calls < s.nth + s.times
	end
	return s.random() < s.p
end

return function(d, specs, opts)
	opts = opts or {}
	assert(type(specs) == "table", "faults: spec or list of specs expected")
	if specs[1] == nil then -- a single spec
		specs = { specs }
	end
	local list, by_op = {}, {}
	for i, spec in ipairs(specs) do
		local s = compile(spec, i)
		list[i] = s
		by_op[s.op] = by_op[s.op] or {}
		table.insert(by_op[s.op], s)
	end
	local state = { specs = list, failures = 0 }

	local driver = mw.wrap(d, function(op, path, call, ...)
		for _, s in ipairs(by_op[op] or {}) do
			if fires(s, path) then
				s.failures = s.failures + 1
				state.failures = state.failures + 1
				if s.partial and op == "writer.write" then
					local data = ...
					call(data:sub(1, math.floor(#data / 2)))
				end
				return nil, mw.error(s.code, s.message or
					("injected %s failure #%d in %s on %s"):format(
						s.transient and "transient" or "permanent",
						s.failures, op, tostring(path)),
					{ transient = s.transient, path = path })
			end
		end
		return call(...)
	end, { name = opts.name or d.name, raw = opts.raw })
	return driver, state
end
