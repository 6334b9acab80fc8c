-- A throwaway PKI for the TLS specs, generated at test time with the
-- `openssl` command in a fresh temporary directory (nothing secret is
-- committed).  EC P-256 keys keep generation fast.
--
--   local pki = require "spec.support.pki"
--   local p = pki.get()        -- generated once per process
--   p.ca, p.server_cert, p.server_key, ...   (file names)
--   pki.read(p.server_cert)                   (PEM text)
--   pki.cleanup()                             (removes the directory)
--
-- What it makes:
--   ca            "uvws test CA" (self-signed, CA:TRUE)
--   server        CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1 (by ca)
--   alt           CN=alt.test, SAN DNS:alt.test only (by ca)
--   expired       CN=localhost, same SANs as server, valid 2020-01-01..2021-01-01 (by ca)
--   selfsigned    CN=localhost, same SANs, self-signed (no CA)
--   client_ca     "uvws test client CA"
--   client        CN=uvws test client, extendedKeyUsage clientAuth (by client_ca)
--   rogue_client  CN=rogue client, clientAuth, self-signed (not by client_ca)

local M = {}

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

function M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- Runs a shell command; raises with its output if it fails.
local function sh(cmd)
  local p = assert(io.popen("timeout 30 " .. cmd .. " 2>&1", "r"))
  local out = p:read("a")
  local ok, _, code = p:close()
  if not ok then
    error(("command failed (%s): %s\n%s"):format(tostring(code), cmd, out), 2)
  end
  return out
end

local SERVER_SAN = "DNS:localhost,IP:127.0.0.1,IP:::1"

local function ext_file(dir, name, san, usage)
  local path = dir .. "/" .. name .. ".ext"
  local lines = {
    "[v3]",
    "basicConstraints = critical, CA:FALSE",
    "keyUsage = critical, digitalSignature, keyEncipherment",
    "extendedKeyUsage = " .. (usage or "serverAuth"),
    "subjectKeyIdentifier = hash",
    "authorityKeyIdentifier = keyid",
  }
  if san then lines[#lines + 1] = "subjectAltName = " .. san end
  write(path, table.concat(lines, "\n") .. "\n")
  return path
end

local function key(dir, name)
  local path = dir .. "/" .. name .. ".key"
  sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " .. q(path))
  return path
end

local function self_signed(dir, name, subj, ca, san)
  local k = key(dir, name)
  local crt = dir .. "/" .. name .. ".pem"
  local ext = dir .. "/" .. name .. "-self.ext"
  local lines = { "[req]", "distinguished_name = dn", "[dn]", "[v3]",
                  "subjectKeyIdentifier = hash" }
  if ca then
    lines[#lines + 1] = "basicConstraints = critical, CA:TRUE"
    lines[#lines + 1] = "keyUsage = critical, keyCertSign, cRLSign"
  else
    lines[#lines + 1] = "basicConstraints = critical, CA:FALSE"
    lines[#lines + 1] = "keyUsage = critical, digitalSignature, keyEncipherment"
    lines[#lines + 1] = "extendedKeyUsage = serverAuth, clientAuth"
  end
  if san then lines[#lines + 1] = "subjectAltName = " .. san end
  write(ext, table.concat(lines, "\n") .. "\n")
  sh(("openssl req -x509 -new -key %s -out %s -days 30 -subj %s -config %s -extensions v3")
     :format(q(k), q(crt), q(subj), q(ext)))
  return crt, k
end

-- A certificate signed by (cacrt, cakey), valid for 30 days from now.
local function issued(dir, name, subj, cacrt, cakey, san, usage)
  local k = key(dir, name)
  local csr = dir .. "/" .. name .. ".csr"
  local crt = dir .. "/" .. name .. ".pem"
  sh(("openssl req -new -key %s -out %s -subj %s"):format(q(k), q(csr), q(subj)))
  sh(("openssl x509 -req -in %s -CA %s -CAkey %s -CAcreateserial -out %s -days 30 -extfile %s -extensions v3")
     :format(q(csr), q(cacrt), q(cakey), q(crt), q(ext_file(dir, name, san, usage))))
  return crt, k
end

-- A certificate signed by the CA whose validity lies in the past: `openssl
-- x509 -req` in OpenSSL 3.0 cannot set dates, `openssl ca` can.
local function expired(dir, name, subj, cacrt, cakey, san)
  local k = key(dir, name)
  local csr = dir .. "/" .. name .. ".csr"
  local crt = dir .. "/" .. name .. ".pem"
  sh(("openssl req -new -key %s -out %s -subj %s"):format(q(k), q(csr), q(subj)))
  local cadir = dir .. "/ca-db"
  sh("mkdir -p " .. q(cadir))
  write(cadir .. "/index.txt", "")
  write(cadir .. "/serial", "1000\n")
  local conf = dir .. "/ca.cnf"
  write(conf, table.concat({
    "[ca]", "default_ca = testca",
    "[testca]",
    "dir = " .. cadir,
    "database = $dir/index.txt",
    "serial = $dir/serial",
    "new_certs_dir = $dir",
    "certificate = " .. cacrt,
    "private_key = " .. cakey,
    "default_md = sha256",
    "policy = anything",
    "unique_subject = no",
    "copy_extensions = none",
    "[anything]",
    "commonName = supplied",
    "[v3]",
    "basicConstraints = critical, CA:FALSE",
    "keyUsage = critical, digitalSignature, keyEncipherment",
    "extendedKeyUsage = serverAuth",
    "subjectAltName = " .. san,
  }, "\n") .. "\n")
  sh(("openssl ca -batch -notext -config %s -extensions v3 -startdate 20200101000000Z " ..
      "-enddate 20210101000000Z -in %s -out %s"):format(q(conf), q(csr), q(crt)))
  return crt, k
end

local cached

-- Generates the PKI (once per process) and returns the table of paths.
function M.get()
  if cached then return cached end
  local p = assert(io.popen("mktemp -d /tmp/uvws-pki.XXXXXX", "r"))
  local dir = p:read("l")
  p:close()
  assert(dir and dir ~= "", "mktemp failed")
  local t = { dir = dir }
  t.ca, t.ca_key = self_signed(dir, "ca", "/CN=uvws test CA", true)
  t.server_cert, t.server_key = issued(dir, "server", "/CN=localhost", t.ca, t.ca_key, SERVER_SAN)
  t.alt_cert, t.alt_key = issued(dir, "alt", "/CN=alt.test", t.ca, t.ca_key, "DNS:alt.test")
  t.expired_cert, t.expired_key = expired(dir, "expired", "/CN=localhost", t.ca, t.ca_key, SERVER_SAN)
  t.self_cert, t.self_key = self_signed(dir, "selfsigned", "/CN=localhost", false, SERVER_SAN)
  t.client_ca, t.client_ca_key = self_signed(dir, "client-ca", "/CN=uvws test client CA", true)
  t.client_cert, t.client_key = issued(dir, "client", "/CN=uvws test client",
                                       t.client_ca, t.client_ca_key, nil, "clientAuth")
  t.rogue_cert, t.rogue_key = self_signed(dir, "rogue", "/CN=rogue client", false, nil)
  cached = t
  return t
end

function M.cleanup()
  if cached and cached.dir:match("^/tmp/uvws%-pki%.") then
    os.execute("rm -rf " .. q(cached.dir))
  end
  cached = nil
end

return M
